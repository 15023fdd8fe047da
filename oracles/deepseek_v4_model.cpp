#include "oracles/deepseek_v4_model.h"

#include "harness/runtime/errors.h"
#include "harness/model/model_config.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "oracles/deepseek_v4_parts.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <limits>

namespace lb {

namespace {

int64_t get_int(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw InputError(std::string("deepseek_v4 config: '") + key + "' must be an integer");
  return j[key].get<int64_t>();
}

double get_double(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) throw InputError(std::string("deepseek_v4 config: '") + key + "' must be a number");
  return j[key].get<double>();
}

// The same inverse frequencies as transformers' default or YaRN rope over `dim` channels.
V4Rope rope_of(const nlohmann::json& p, int64_t dim, const std::string& label) {
  ModelConfig c;
  c.family = ModelFamily::DeepseekV3;
  c.qk_rope_head_dim = dim;
  c.rope.type = p.value("rope_type", std::string("default"));
  if (c.rope.type != "default" && c.rope.type != "yarn")
    throw InputError("deepseek_v4 config: rope_parameters." + label + ".rope_type '" + c.rope.type +
                     "' (default or yarn)");
  c.rope.theta = get_double(p, "rope_theta");
  if (c.rope.type == "yarn") {
    c.rope.factor = get_double(p, "factor");
    c.rope.original_max_position = get_int(p, "original_max_position_embeddings");
    c.rope.beta_fast = p.value("beta_fast", 32.0);
    c.rope.beta_slow = p.value("beta_slow", 1.0);
    if (p.contains("attention_factor")) c.rope.attention_factor = get_double(p, "attention_factor");
    c.rope.truncate = p.value("truncate", true);
  }
  const Rope r = make_rope(c);
  return {r.inv_freq, r.attention_factor};
}

const torch::Tensor& weight(const std::map<std::string, torch::Tensor>& w, const std::string& name) {
  auto it = w.find(name);
  if (it == w.end()) throw InputError("deepseek_v4 weights: missing '" + name + "'");
  return it->second;
}

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w) { return torch::matmul(x, w.t()); }

torch::Tensor unweighted_rmsnorm(const torch::Tensor& x, double eps) {
  return x * torch::rsqrt(x.square().mean(-1, true) + eps);
}

struct CosSinHalf {
  torch::Tensor cos, sin;  // [n, rope_dim / 2]
};

CosSinHalf cos_sin(const V4Rope& rope, const torch::Tensor& positions) {
  const torch::Tensor angles =
      positions.to(torch::kFloat32).unsqueeze(1) * rope.inv_freq.to(positions.device()).unsqueeze(0);
  return {angles.cos() * rope.attention_factor, angles.sin() * rope.attention_factor};
}

// Rotates the trailing 2 * cos.size(-1) channels of x as consecutive (even, odd) pairs; cos and
// sin broadcast against x's leading dimensions, [..., rope_dim / 2].
torch::Tensor rope_tail(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = cos.size(-1), d = x.size(-1);
  const torch::Tensor nope = x.narrow(-1, 0, d - 2 * half);
  std::vector<int64_t> pair_shape(x.sizes().begin(), x.sizes().end() - 1);
  pair_shape.push_back(half);
  pair_shape.push_back(2);
  const torch::Tensor pairs = x.narrow(-1, d - 2 * half, 2 * half).reshape(pair_shape);
  const torch::Tensor a = pairs.select(-1, 0), b = pairs.select(-1, 1);
  const torch::Tensor ra = a * cos + (-b) * sin, rb = b * cos + a * sin;
  return torch::cat({nope, torch::stack({ra, rb}, -1).flatten(-2)}, -1);
}

// The most attention logits (floats) one chunk of heads may hold.
constexpr int64_t kMaxLogits = int64_t(1) << 28;

std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

const V4Rope& layer_rope(const DeepseekV4Config& c, int64_t layer) {
  return c.attention[size_t(layer)] == V4Attention::Sliding ? c.main_rope : c.compress_rope;
}

struct Span {
  int64_t start = 0, size = 0;
};

// The shard's rows of a dimension of `total` (the caller has checked that the shares are equal).
Span share_of(int64_t total, v4::V4Shard shard) {
  const int64_t size = total / shard.count;
  return {shard.index * size, size};
}

// The projections a layer's key sources come from, in their packed order: the K=V head, then on
// compressed layers the compressor's kv and gate, then on CSA layers the indexer compressor's.
std::vector<std::string> key_projections(const DeepseekV4Config& c, int64_t layer) {
  const std::string p = layer_prefix(layer) + "self_attn.";
  const V4Attention kind = c.attention[size_t(layer)];
  std::vector<std::string> names = {p + "kv_proj.weight"};
  if (kind != V4Attention::Sliding) {
    names.push_back(p + "compressor.kv_proj.weight");
    names.push_back(p + "compressor.gate_proj.weight");
  }
  if (kind == V4Attention::CompressedSparse) {
    names.push_back(p + "compressor.indexer.kv_proj.weight");
    names.push_back(p + "compressor.indexer.gate_proj.weight");
  }
  return names;
}

// Entries of the compressed KV from every token's kv and gate projections: a softmax over each
// window's slots per channel (the gate plus a learned per-slot bias) weighting the projected
// tokens, then RMSNorm and RoPE at the window's first position. Tokens after the last whole window
// are not used yet. `overlap` (CSA): each window also pools the first half of the channels of the
// previous window's tokens, its own tokens use the second half.
torch::Tensor compress(const std::map<std::string, torch::Tensor>& w, const std::string& p, const torch::Tensor& kv_rows,
                       const torch::Tensor& gate_rows, int64_t rate, int64_t width, bool overlap, const V4Rope& rope,
                       double eps) {
  const int64_t n = kv_rows.size(0) / rate;
  if (n == 0) return torch::zeros({0, width}, kv_rows.options());
  const torch::Tensor kv = kv_rows.narrow(0, 0, n * rate).reshape({n, rate, -1});
  const torch::Tensor gate = gate_rows.narrow(0, 0, n * rate).reshape({n, rate, -1}) + weight(w, p + "position_bias");
  torch::Tensor slots_kv = kv, slots_gate = gate;
  if (overlap) {
    slots_kv = torch::zeros({n, 2 * rate, width}, kv.options());
    slots_gate = torch::full({n, 2 * rate, width}, -std::numeric_limits<float>::infinity(), kv.options());
    slots_kv.narrow(1, rate, rate).copy_(kv.narrow(2, width, width));
    slots_gate.narrow(1, rate, rate).copy_(gate.narrow(2, width, width));
    if (n > 1) {
      slots_kv.narrow(0, 1, n - 1).narrow(1, 0, rate).copy_(kv.narrow(0, 0, n - 1).narrow(2, 0, width));
      slots_gate.narrow(0, 1, n - 1).narrow(1, 0, rate).copy_(gate.narrow(0, 0, n - 1).narrow(2, 0, width));
    }
  }
  torch::Tensor entries = (slots_kv * torch::softmax(slots_gate, 1)).sum(1);
  entries = rmsnorm(entries, weight(w, p + "kv_norm.weight"), eps);
  const CosSinHalf cs = cos_sin(rope, torch::arange(n, kv_rows.options().dtype(torch::kInt64)) * rate);
  return rope_tail(entries, cs.cos, cs.sin);
}

// Entry e is visible to the token at position t once its window has closed: e < (t + 1) / rate.
torch::Tensor future_entries(const torch::Tensor& positions, int64_t entries, int64_t rate) {
  return torch::arange(entries, positions.options()).unsqueeze(0) >= torch::div(positions + 1, rate, "floor").unsqueeze(1);
}

// The lightning indexer's pick of compressed entries (`keys`, the indexer's own) per query:
// [T, k], -1 where it picked one not yet visible.
torch::Tensor indexer_topk(const DeepseekV4Config& c, const std::map<std::string, torch::Tensor>& w,
                           const std::string& p, const torch::Tensor& x, const torch::Tensor& q_residual,
                           const torch::Tensor& positions, const torch::Tensor& keys) {
  const int64_t T = x.size(0), entries = keys.size(0);
  if (entries == 0) return torch::zeros({T, 0}, positions.options());
  const CosSinHalf cs = cos_sin(c.compress_rope, positions);
  const torch::Tensor q = rope_tail(project(q_residual, weight(w, p + "q_b_proj.weight")).view({T, c.index_heads, -1}),
                                    cs.cos.unsqueeze(1), cs.sin.unsqueeze(1));
  const torch::Tensor scores = torch::relu(torch::matmul(q, keys.t())) * std::pow(double(c.index_head_dim), -0.5);
  const torch::Tensor head_weights =
      project(x, weight(w, p + "scorer.weights_proj.weight")) * std::pow(double(c.index_heads), -0.5);
  torch::Tensor score = (scores * head_weights.unsqueeze(-1)).sum(1);  // [T, entries]
  const int64_t k = std::min(c.index_topk, entries);
  const torch::Tensor hidden = future_entries(positions, entries, c.csa_rate);
  score = score.masked_fill(hidden, -std::numeric_limits<float>::infinity());
  const torch::Tensor picks = std::get<1>(score.topk(k, -1));
  const torch::Tensor threshold = torch::div(positions + 1, c.csa_rate, "floor").unsqueeze(1);
  return torch::where(picks >= threshold, torch::full_like(picks, -1), picks);
}

torch::Tensor clamped_swiglu(const torch::Tensor& gate, const torch::Tensor& up, double limit) {
  return torch::silu(gate.clamp_max(limit)) * up.clamp(-limit, limit);
}

// One hyper-connection site: pre/post/comb from the normalized, flattened streams.
v4::StreamMix hyper_connection(const DeepseekV4Config& c, const std::map<std::string, torch::Tensor>& w,
                               const std::string& p, const torch::Tensor& h) {
  const int64_t T = h.size(0), N = c.hc_mult;
  const torch::Tensor mix = project(unweighted_rmsnorm(h.reshape({T, -1}), c.rms_eps), weight(w, p + "fn"));
  const torch::Tensor base = weight(w, p + "base"), scale = weight(w, p + "scale");
  const torch::Tensor pre = torch::sigmoid(mix.narrow(1, 0, N) * scale[0] + base.narrow(0, 0, N)) + c.hc_eps;
  const torch::Tensor post = 2 * torch::sigmoid(mix.narrow(1, N, N) * scale[1] + base.narrow(0, N, N));
  torch::Tensor comb =
      torch::softmax(mix.narrow(1, 2 * N, N * N).view({T, N, N}) * scale[2] + base.narrow(0, 2 * N, N * N).view({N, N}), -1) +
      c.hc_eps;
  // Sinkhorn-Knopp: columns first, then rows and columns in turn.
  comb = comb / (comb.sum(-2, true) + c.hc_eps);
  for (int64_t it = 1; it < c.hc_sinkhorn_iters; ++it) {
    comb = comb / (comb.sum(-1, true) + c.hc_eps);
    comb = comb / (comb.sum(-2, true) + c.hc_eps);
  }
  return {post, comb, (pre.unsqueeze(-1) * h).sum(1)};
}

v4::SublayerInput sublayer_input(const DeepseekV4Config& c, const std::map<std::string, torch::Tensor>& w,
                                 const std::string& hc_prefix, const std::string& norm, const torch::Tensor& h) {
  const v4::StreamMix mix = hyper_connection(c, w, hc_prefix, h);
  return {mix, rmsnorm(mix.collapsed, weight(w, norm), c.rms_eps)};
}

}  // namespace

namespace v4 {

torch::Tensor embed_streams(const DeepseekV4Config& c, const Weights& w, const torch::Tensor& input_ids) {
  const torch::Tensor embedded = weight(w, "model.embed_tokens.weight").index_select(0, input_ids);
  return embedded.unsqueeze(1).expand({input_ids.size(0), c.hc_mult, c.hidden}).contiguous();
}

SublayerInput attention_input(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& h) {
  const std::string p = layer_prefix(layer);
  return sublayer_input(c, w, p + "attn_hc.", p + "input_layernorm.weight", h);
}

SublayerInput moe_input(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& h) {
  const std::string p = layer_prefix(layer);
  return sublayer_input(c, w, p + "ffn_hc.", p + "post_attention_layernorm.weight", h);
}

torch::Tensor remix(const StreamMix& m, const torch::Tensor& out, const torch::Tensor& h) {
  return m.post.unsqueeze(-1) * out.unsqueeze(1) + torch::matmul(m.comb.transpose(-1, -2), h);
}

torch::Tensor key_sources(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                          const torch::Tensor& positions) {
  const std::vector<std::string> names = key_projections(c, layer);
  const CosSinHalf cs = cos_sin(layer_rope(c, layer), positions);
  const torch::Tensor kv_norm = weight(w, layer_prefix(layer) + "self_attn.kv_norm.weight");
  std::vector<torch::Tensor> parts = {rope_tail(rmsnorm(project(x, weight(w, names[0])), kv_norm, c.rms_eps), cs.cos, cs.sin)};
  for (size_t k = 1; k < names.size(); ++k) parts.push_back(project(x, weight(w, names[k])));
  return torch::cat(parts, 1);
}

V4Keys build_keys(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& sources) {
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (const std::string& name : key_projections(c, layer)) {
    const int64_t width = weight(w, name).size(0);
    parts.push_back(sources.narrow(1, offset, width));
    offset += width;
  }
  const std::string p = layer_prefix(layer) + "self_attn.compressor.";
  const V4Attention kind = c.attention[size_t(layer)];
  const bool sparse = kind == V4Attention::CompressedSparse;
  V4Keys keys;
  keys.kv = parts[0];
  if (kind != V4Attention::Sliding)
    keys.entries = compress(w, p, parts[1], parts[2], sparse ? c.csa_rate : c.hca_rate, c.head_dim, sparse,
                            c.compress_rope, c.rms_eps);
  if (sparse)
    keys.index_keys = compress(w, p + "indexer.", parts[3], parts[4], c.csa_rate, c.index_head_dim, true,
                               c.compress_rope, c.rms_eps);
  return keys;
}

torch::Tensor attention(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                        const torch::Tensor& positions, const V4Keys& keys, V4Shard shard, Choice chosen) {
  const std::string p = layer_prefix(layer) + "self_attn.";
  const V4Attention kind = c.attention[size_t(layer)];
  const CosSinHalf cs = cos_sin(layer_rope(c, layer), positions);
  const Span heads = share_of(c.num_heads, shard), groups = share_of(c.o_groups, shard);
  const int64_t T = x.size(0), H = heads.size, D = c.head_dim;

  const torch::Tensor q_residual = rmsnorm(project(x, weight(w, p + "q_a_proj.weight")), weight(w, p + "q_a_norm.weight"), c.rms_eps);
  const torch::Tensor q_b = weight(w, p + "q_b_proj.weight").narrow(0, heads.start * D, H * D);
  torch::Tensor q = unweighted_rmsnorm(project(q_residual, q_b).view({T, H, D}), c.rms_eps);
  q = rope_tail(q, cs.cos.unsqueeze(1), cs.sin.unsqueeze(1));
  // Sliding window over the sequence itself: key j is visible to the query at position i when
  // j <= i and j > i - window.
  const torch::Tensor i = positions.unsqueeze(1), j = torch::arange(keys.kv.size(0), positions.options()).unsqueeze(0);
  const float inf = std::numeric_limits<float>::infinity();
  const auto real = keys.kv.options();
  torch::Tensor mask = torch::zeros({T, keys.kv.size(0)}, real).masked_fill((j > i) | (j <= i - c.sliding_window), -inf);
  torch::Tensor all_keys = keys.kv;

  if (kind != V4Attention::Sliding) {
    const int64_t entries = keys.entries.size(0);
    torch::Tensor bias;
    if (kind == V4Attention::CompressedSparse) {
      // Only the indexer's valid picks are visible.
      const torch::Tensor picks =
          chosen.given.defined() ? chosen.given
                                 : indexer_topk(c, w, p + "compressor.indexer.", x, q_residual, positions, keys.index_keys);
      if (chosen.made) *chosen.made = picks;
      const torch::Tensor safe = torch::where(picks >= 0, picks, torch::full_like(picks, entries));
      bias = torch::full({T, entries + 1}, -inf, real).scatter_(1, safe, 0.0).narrow(1, 0, entries);
    } else {
      bias = torch::zeros({T, entries}, real).masked_fill(future_entries(positions, entries, c.hca_rate), -inf);
    }
    all_keys = torch::cat({all_keys, keys.entries});
    mask = torch::cat({mask, bias}, 1);
  }
  // Every head reads the one K=V head; each head's sink logit joins the softmax and is dropped.
  // The logits of all heads at once would take H x T x K floats (5 GB at V4-Flash's 64 heads and
  // 4096 tokens), so the heads go in chunks of at most kMaxLogits of them.
  const int64_t K = all_keys.size(0);
  const int64_t chunk = std::max<int64_t>(1, kMaxLogits / std::max<int64_t>(1, T * K));
  const torch::Tensor sinks = weight(w, p + "sinks").narrow(0, heads.start, H);
  std::vector<torch::Tensor> head_outputs;
  for (int64_t h0 = 0; h0 < H; h0 += chunk) {
    const int64_t n = std::min(chunk, H - h0);
    const torch::Tensor logits =
        torch::matmul(q.narrow(1, h0, n).transpose(0, 1), all_keys.t()) * std::pow(double(D), -0.5) + mask;  // [n,T,K]
    torch::Tensor combined = torch::cat({logits, sinks.narrow(0, h0, n).view({n, 1, 1}).expand({n, T, 1})}, -1);
    combined = combined - std::get<0>(combined.max(-1, true));
    const torch::Tensor probs = torch::softmax(combined, -1).narrow(-1, 0, K);
    head_outputs.push_back(torch::matmul(probs, all_keys));  // [n, T, D]
  }
  torch::Tensor out = torch::cat(head_outputs, 0).transpose(0, 1);  // [T, H, D]
  out = rope_tail(out, cs.cos.unsqueeze(1), -cs.sin.unsqueeze(1));

  // Grouped output projection: heads in o_groups groups, each projected by its own block of rows
  // of o_a_proj; a shard holds whole groups, so its part of o_b_proj is the groups' columns.
  const int64_t G = groups.size, R = c.o_lora_rank;
  const torch::Tensor grouped = out.reshape({T, G, -1}).transpose(0, 1);                                     // [G, T, in]
  const torch::Tensor blocks = weight(w, p + "o_a_proj.weight").view({c.o_groups, R, -1}).narrow(0, groups.start, G);  // [G, R, in]
  const torch::Tensor projected = torch::bmm(grouped, blocks.transpose(1, 2)).transpose(0, 1).reshape({T, -1});
  return project(projected, weight(w, p + "o_b_proj.weight").narrow(1, groups.start * R, G * R));
}

torch::Tensor moe(const DeepseekV4Config& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                  const torch::Tensor& input_ids, V4Shard shard, Choice chosen) {
  const std::string p = layer_prefix(layer) + "mlp.";
  const torch::Tensor scores = torch::sqrt(torch::softplus(project(x, weight(w, p + "gate.weight"))));
  const torch::Tensor experts =
      chosen.given.defined() ? chosen.given
      : c.hash_routed[size_t(layer)]
          ? weight(w, p + "gate.tid2eid").index_select(0, input_ids).to(torch::kInt64)
          : std::get<1>((scores + weight(w, p + "gate.e_score_correction_bias")).topk(c.experts_per_token, -1, true, false));
  if (chosen.made) *chosen.made = experts;
  torch::Tensor weights = scores.gather(1, experts);
  weights = weights / (weights.sum(-1, true) + 1e-20) * c.routed_scaling;

  // Clamped SwiGLU is elementwise over the intermediate dimension, so a slice of it (gate and up
  // rows, down columns) gives this shard's exact part of the sum.
  const torch::Tensor gate_up = weight(w, p + "experts.gate_up_proj"), down = weight(w, p + "experts.down_proj");
  const int64_t I = c.moe_intermediate;
  const Span inner = share_of(I, shard);
  torch::Tensor routed = torch::zeros_like(x);
  for (int64_t e = 0; e < c.num_experts; ++e) {  // ascending, as transformers accumulates
    const torch::Tensor hit = (experts == e).nonzero();
    if (hit.size(0) == 0) continue;
    const torch::Tensor token = hit.select(1, 0), slot = hit.select(1, 1);
    const torch::Tensor xe = x.index_select(0, token);
    const torch::Tensor h = clamped_swiglu(project(xe, gate_up[e].narrow(0, inner.start, inner.size)),
                                           project(xe, gate_up[e].narrow(0, I + inner.start, inner.size)), c.swiglu_limit);
    const torch::Tensor y = project(h, down[e].narrow(1, inner.start, inner.size)) * weights.index({token, slot}).unsqueeze(1);
    routed.index_add_(0, token, y);
  }
  const std::string s = p + "shared_experts.";
  const Span shared_inner = share_of(weight(w, s + "gate_proj.weight").size(0), shard);
  auto rows = [&](const std::string& name) { return weight(w, s + name).narrow(0, shared_inner.start, shared_inner.size); };
  const torch::Tensor shared =
      project(clamped_swiglu(project(x, rows("gate_proj.weight")), project(x, rows("up_proj.weight")), c.swiglu_limit),
              weight(w, s + "down_proj.weight").narrow(1, shared_inner.start, shared_inner.size));
  return routed + shared;
}

V4Head output_head(const DeepseekV4Config& c, const Weights& w, const torch::Tensor& h) {
  // The streams collapse once more before the final norm, with weights of their own.
  const int64_t T = h.size(0);
  const torch::Tensor mixes = project(unweighted_rmsnorm(h.reshape({T, -1}), c.rms_eps), weight(w, "model.hc_head.hc_fn"));
  const torch::Tensor pre = torch::sigmoid(mixes * weight(w, "model.hc_head.hc_scale") + weight(w, "model.hc_head.hc_base")) + c.hc_eps;
  const torch::Tensor final_norm = rmsnorm((pre.unsqueeze(-1) * h).sum(1), weight(w, "model.norm.weight"), c.rms_eps);
  return {final_norm, project(final_norm, weight(w, "lm_head.weight"))};
}

}  // namespace v4

DeepseekV4Config read_deepseek_v4_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot read " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not JSON (" + e.what() + ")");
  }
  return deepseek_v4_config_from_json(j, path);
}

DeepseekV4Config deepseek_v4_config_from_json(const nlohmann::json& j, const std::string& path) {
  if (j.value("model_type", std::string()) != "deepseek_v4")
    throw InputError(path + ": model_type '" + j.value("model_type", std::string()) + "' is not deepseek_v4");
  DeepseekV4Config c;
  c.vocab = get_int(j, "vocab_size");
  c.hidden = get_int(j, "hidden_size");
  c.num_layers = get_int(j, "num_hidden_layers");
  c.num_heads = get_int(j, "num_attention_heads");
  c.head_dim = get_int(j, "head_dim");
  c.rope_dim = get_int(j, "qk_rope_head_dim");
  c.q_lora_rank = get_int(j, "q_lora_rank");
  c.sliding_window = get_int(j, "sliding_window");
  c.o_groups = get_int(j, "o_groups");
  c.o_lora_rank = get_int(j, "o_lora_rank");
  c.index_heads = get_int(j, "index_n_heads");
  c.index_head_dim = get_int(j, "index_head_dim");
  c.index_topk = get_int(j, "index_topk");
  c.hc_mult = get_int(j, "hc_mult");
  c.hc_sinkhorn_iters = get_int(j, "hc_sinkhorn_iters");
  c.num_experts = get_int(j, "n_routed_experts");
  c.experts_per_token = get_int(j, "num_experts_per_tok");
  c.moe_intermediate = get_int(j, "moe_intermediate_size");
  c.shared_intermediate = c.moe_intermediate * get_int(j, "n_shared_experts");
  c.rms_eps = get_double(j, "rms_norm_eps");
  c.hc_eps = get_double(j, "hc_eps");
  c.routed_scaling = get_double(j, "routed_scaling_factor");
  c.swiglu_limit = get_double(j, "swiglu_limit");
  if (j.value("scoring_func", std::string()) != "sqrtsoftplus")
    throw InputError(path + ": scoring_func '" + j.value("scoring_func", std::string()) + "' (only sqrtsoftplus)");
  const auto& rates = j.at("compress_rates");
  c.csa_rate = get_int(rates, "compressed_sparse_attention");
  c.hca_rate = get_int(rates, "heavily_compressed_attention");
  for (const auto& t : j.at("layer_types")) {
    const std::string s = t.get<std::string>();
    if (s == "sliding_attention") c.attention.push_back(V4Attention::Sliding);
    else if (s == "compressed_sparse_attention") c.attention.push_back(V4Attention::CompressedSparse);
    else if (s == "heavily_compressed_attention") c.attention.push_back(V4Attention::HeavilyCompressed);
    else throw InputError(path + ": layer_types entry '" + s + "'");
  }
  for (const auto& t : j.at("mlp_layer_types")) {
    const std::string s = t.get<std::string>();
    if (s != "hash_moe" && s != "moe") throw InputError(path + ": mlp_layer_types entry '" + s + "'");
    c.hash_routed.push_back(s == "hash_moe");
  }
  if (int64_t(c.attention.size()) != c.num_layers || int64_t(c.hash_routed.size()) != c.num_layers)
    throw InputError(path + ": layer_types and mlp_layer_types need num_hidden_layers entries");
  const auto& rp = j.at("rope_parameters");
  c.main_rope = rope_of(rp.at("main"), c.rope_dim, "main");
  c.compress_rope = rope_of(rp.at("compress"), c.rope_dim, "compress");
  return c;
}

DeepseekV4Output deepseek_v4_forward(const DeepseekV4Config& c, const std::map<std::string, torch::Tensor>& w,
                                     const torch::Tensor& input_ids, DeepseekV4Choices* choices) {
  using namespace v4;
  const torch::Tensor positions = torch::arange(input_ids.size(0), input_ids.options().dtype(torch::kInt64));
  torch::Tensor h = embed_streams(c, w, input_ids);
  DeepseekV4Output out;
  if (choices) *choices = {std::vector<torch::Tensor>(size_t(c.num_layers)), std::vector<torch::Tensor>(size_t(c.num_layers))};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const SublayerInput a = attention_input(c, w, l, h);
    const V4Keys keys = build_keys(c, w, l, key_sources(c, w, l, a.normed, positions));
    Choice picks, experts;
    if (choices) picks.made = &choices->index_picks[size_t(l)], experts.made = &choices->experts[size_t(l)];
    h = remix(a.mix, attention(c, w, l, a.normed, positions, keys, {}, picks), h);
    const SublayerInput f = moe_input(c, w, l, h);
    h = remix(f.mix, moe(c, w, l, f.normed, input_ids, {}, experts), h);
    out.layers.push_back(h);
  }
  const V4Head head = output_head(c, w, h);
  out.final_norm = head.final_norm;
  out.logits = head.logits;
  return out;
}

}  // namespace lb
