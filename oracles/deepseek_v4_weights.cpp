#include "oracles/deepseek_v4_weights.h"

#include "harness/model/checkpoint.h"
#include "harness/model/random_weights.h"

#include <algorithm>
#include <cmath>

namespace lb {

namespace {

using Init = V4TensorSpec::Init;

// Elements hashed at once: one V4-Flash expert's gate and up rows.
constexpr int64_t kMaxBlock = int64_t(1) << 24;

// The hyper-connection mixing at one site: pre (N), post (N) and comb (N x N) per token.
int64_t hc_mix_width(const DeepseekV4Config& c) { return c.hc_mult * c.hc_mult + 2 * c.hc_mult; }

void add_compressor(std::vector<V4TensorSpec>& specs, const std::string& p, const DeepseekV4Config& c, int64_t width,
                    int64_t rate, bool overlap) {
  // Overlapping windows (CSA) project twice the width: half pools into the next window.
  const int64_t projected = overlap ? 2 * width : width;
  specs.push_back({p + "kv_proj.weight", {projected, c.hidden}, Init::Linear});
  specs.push_back({p + "gate_proj.weight", {projected, c.hidden}, Init::Linear});
  specs.push_back({p + "kv_norm.weight", {width}, Init::Norm});
  specs.push_back({p + "position_bias", {rate, projected}, Init::Linear});
}

// Unit-variance uniform values for the elements of `spec` (or one slice of it) in float32.
torch::Tensor hashed(const V4TensorSpec& spec, uint64_t seed, torch::Device device, std::optional<Slice> slice = {}) {
  return hashed_uniform(spec.name, seed, spec.shape, device, slice);
}

torch::Tensor random_tensor(const V4TensorSpec& spec, const DeepseekV4Config& c, uint64_t seed, torch::Device device) {
  switch (spec.init) {
    case Init::Linear: {
      // A block of leading rows at a time, so that the hash's int64 temporaries stay small.
      const float scale = float(1.0 / std::sqrt(double(spec.shape.back())));
      torch::Tensor out = torch::empty(spec.shape, torch::TensorOptions().dtype(torch::kFloat32).device(device));
      const int64_t row = out.numel() / spec.shape[0];
      const int64_t rows = std::max<int64_t>(1, kMaxBlock / std::max<int64_t>(1, row));
      for (int64_t r = 0; r < spec.shape[0]; r += rows) {
        const int64_t n = std::min(rows, spec.shape[0] - r);
        out.narrow(0, r, n).copy_(hashed(spec, seed, device, Slice{0, r, n}) * scale);
      }
      return out;
    }
    case Init::Norm: return 1.0f + hashed(spec, seed, device) * float(0.5 / std::sqrt(3.0));
    case Init::Small: return hashed(spec, seed, device) * 0.3f;
    case Init::HashTable:
      // The first k of a random order of the experts, per token id: k distinct experts.
      return hashed_uniform(spec.name, seed, {c.vocab, c.num_experts}, device)
          .argsort(/*dim=*/int64_t(1))
          .narrow(1, 0, c.experts_per_token)
          .contiguous();
  }
  return {};
}

}  // namespace

std::vector<V4TensorSpec> deepseek_v4_tensor_specs(const DeepseekV4Config& c) {
  const int64_t D = c.hidden, N = c.hc_mult;
  std::vector<V4TensorSpec> specs = {
      {"model.embed_tokens.weight", {c.vocab, D}, Init::Linear},
      {"model.norm.weight", {D}, Init::Norm},
      {"model.hc_head.hc_fn", {N, N * D}, Init::Linear},
      {"model.hc_head.hc_base", {N}, Init::Small},
      {"model.hc_head.hc_scale", {1}, Init::Small},
      {"lm_head.weight", {c.vocab, D}, Init::Linear},
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* site : {"attn_hc.", "ffn_hc."}) {
      specs.push_back({p + site + "fn", {hc_mix_width(c), N * D}, Init::Linear});
      specs.push_back({p + site + "base", {hc_mix_width(c)}, Init::Small});
      specs.push_back({p + site + "scale", {3}, Init::Small});
    }
    specs.push_back({p + "input_layernorm.weight", {D}, Init::Norm});
    specs.push_back({p + "post_attention_layernorm.weight", {D}, Init::Norm});

    const std::string a = p + "self_attn.";
    specs.push_back({a + "q_a_proj.weight", {c.q_lora_rank, D}, Init::Linear});
    specs.push_back({a + "q_a_norm.weight", {c.q_lora_rank}, Init::Norm});
    specs.push_back({a + "q_b_proj.weight", {c.num_heads * c.head_dim, c.q_lora_rank}, Init::Linear});
    specs.push_back({a + "kv_proj.weight", {c.head_dim, D}, Init::Linear});
    specs.push_back({a + "kv_norm.weight", {c.head_dim}, Init::Norm});
    specs.push_back({a + "o_a_proj.weight", {c.o_groups * c.o_lora_rank, c.num_heads * c.head_dim / c.o_groups},
                     Init::Linear});
    specs.push_back({a + "o_b_proj.weight", {D, c.o_groups * c.o_lora_rank}, Init::Linear});
    specs.push_back({a + "sinks", {c.num_heads}, Init::Small});
    const V4Attention kind = c.attention[size_t(l)];
    if (kind == V4Attention::CompressedSparse) {
      add_compressor(specs, a + "compressor.", c, c.head_dim, c.csa_rate, true);
      const std::string i = a + "compressor.indexer.";
      add_compressor(specs, i, c, c.index_head_dim, c.csa_rate, true);
      specs.push_back({i + "q_b_proj.weight", {c.index_heads * c.index_head_dim, c.q_lora_rank}, Init::Linear});
      specs.push_back({i + "scorer.weights_proj.weight", {c.index_heads, D}, Init::Linear});
    } else if (kind == V4Attention::HeavilyCompressed) {
      add_compressor(specs, a + "compressor.", c, c.head_dim, c.hca_rate, false);
    }

    const std::string m = p + "mlp.";
    specs.push_back({m + "gate.weight", {c.num_experts, D}, Init::Linear});
    if (c.hash_routed[size_t(l)])
      specs.push_back({m + "gate.tid2eid", {c.vocab, c.experts_per_token}, Init::HashTable});
    else
      specs.push_back({m + "gate.e_score_correction_bias", {c.num_experts}, Init::Small});
    specs.push_back({m + "experts.gate_up_proj", {c.num_experts, 2 * c.moe_intermediate, D}, Init::Linear});
    specs.push_back({m + "experts.down_proj", {c.num_experts, D, c.moe_intermediate}, Init::Linear});
    specs.push_back({m + "shared_experts.gate_proj.weight", {c.shared_intermediate, D}, Init::Linear});
    specs.push_back({m + "shared_experts.up_proj.weight", {c.shared_intermediate, D}, Init::Linear});
    specs.push_back({m + "shared_experts.down_proj.weight", {D, c.shared_intermediate}, Init::Linear});
  }
  return specs;
}

std::map<std::string, torch::Tensor> random_deepseek_v4_weights(const DeepseekV4Config& c, uint64_t seed,
                                                                torch::Device device) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> weights;
  for (const V4TensorSpec& spec : deepseek_v4_tensor_specs(c)) weights[spec.name] = random_tensor(spec, c, seed, device);
  return weights;
}

std::map<std::string, torch::Tensor> load_deepseek_v4_weights(const DeepseekV4Config& c, const std::string& dir,
                                                              torch::Device device) {
  const Checkpoint checkpoint(dir);
  std::map<std::string, torch::Tensor> weights;
  for (const V4TensorSpec& spec : deepseek_v4_tensor_specs(c)) {
    const torch::ScalarType type = spec.init == Init::HashTable ? torch::kInt64 : torch::kFloat32;
    weights[spec.name] = checkpoint.read_expect(spec.name, spec.shape, type).to(device);
  }
  return weights;
}

}  // namespace lb
