#pragma once
// DeepSeek-V4 as transformers 5.17's `deepseek_v4` computes it (one sequence, no cache): hyper-
// connection residual streams (mHC, Sinkhorn-normalized mixing), attention with one shared K=V
// head over a sliding window plus compressed entries (CSA: overlapping windows chosen per query by
// the lightning indexer; HCA: disjoint windows), attention sinks, interleaved partial RoPE undone on
// the output, grouped output projection, and MoE with sqrt(softplus) scores, hash routing on the
// first layers and clamped SwiGLU experts. Checked against fixtures transformers computed
// (tests/fixtures/deepseek_v4_tiny). Its steps (oracles/deepseek_v4_parts.h) also run the "tp"
// baseline and layout A on CPU ranks (layouts/deepseek_v4_layouts.h, one sequence, prefill, fp32).
// Not covered: the KV/compressor caches (chunked prefill and decode), FP8 checkpoints and the GPU
// kernels. `layoutbench check/bench` run it through harness/deepseek_v4_commands.h.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace lb {

enum class V4Attention { Sliding, CompressedSparse, HeavilyCompressed };

struct V4Rope {
  torch::Tensor inv_freq;  // float32 [rope_dim / 2]
  double attention_factor = 1.0;
};

struct DeepseekV4Config {
  int64_t vocab = 0, hidden = 0, num_layers = 0, num_heads = 0, head_dim = 0, rope_dim = 0, q_lora_rank = 0;
  int64_t sliding_window = 0, csa_rate = 0, hca_rate = 0;
  int64_t o_groups = 0, o_lora_rank = 0, index_heads = 0, index_head_dim = 0, index_topk = 0;
  int64_t hc_mult = 0, hc_sinkhorn_iters = 0;
  int64_t num_experts = 0, experts_per_token = 0, moe_intermediate = 0, shared_intermediate = 0;
  double rms_eps = 1e-6, hc_eps = 1e-6, routed_scaling = 1.0, swiglu_limit = 0.0;
  std::vector<V4Attention> attention;  // per layer
  std::vector<bool> hash_routed;       // per layer: experts from tid2eid[token id]
  V4Rope main_rope, compress_rope;     // sliding layers / compressed layers, compressors, indexer
};

// transformers' config.json of a deepseek_v4 model; InputError naming the field on a bad one.
DeepseekV4Config read_deepseek_v4_config(const std::string& path);
// The same from its parsed JSON; `source` names it in errors.
DeepseekV4Config deepseek_v4_config_from_json(const nlohmann::json& j, const std::string& source);

struct DeepseekV4Output {
  std::vector<torch::Tensor> layers;  // each layer's residual streams [T, hc_mult, hidden]
  torch::Tensor final_norm;           // [T, hidden]
  torch::Tensor logits;               // [T, vocab]
};

// The discrete choices of a forward pass, per layer (undefined where a layer makes none): the
// compressed entries each query's indexer picked (CSA layers, [T, index_topk], -1 for none) and
// the experts each token went to (top-k and hash layers, [T, experts_per_token]), rows in original
// token order. A layout can be run on the reference's choices, so that its continuous math is
// compared without near-ties in a top-k flipping one way here and the other way there.
struct DeepseekV4Choices {
  std::vector<torch::Tensor> index_picks;
  std::vector<torch::Tensor> experts;
};

// Weights by transformers' names (model.safetensors of a deepseek_v4 model, fused experts).
// `choices`, when given, receives the choices the pass made.
DeepseekV4Output deepseek_v4_forward(const DeepseekV4Config& config, const std::map<std::string, torch::Tensor>& weights,
                                     const torch::Tensor& input_ids, DeepseekV4Choices* choices = nullptr);

}  // namespace lb
