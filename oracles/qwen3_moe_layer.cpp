#include "oracles/qwen3_moe_layer.h"

#include "kernels/fused_moe.h"
#include "kernels/fused_norm.h"
#include "kernels/fused_routing.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/small_linear.h"
#include "oracles/cached_attention.h"

#include <tuple>

namespace lb {

QkvStates qwen3_qkv(const ModelConfig& c, const LayerWeights& w, const Rope& rope, const torch::Tensor& x_normed,
                    const torch::Tensor& positions, const CacheStep* cache) {
  return qwen3_qkv(c, w, rope_cos_sin(rope, positions, x_normed.scalar_type()), x_normed, cache);
}

QkvStates qwen3_qkv(const ModelConfig& c, const LayerWeights& w, const CosSin& cs, const torch::Tensor& x_normed,
                    const CacheStep* cache) {
  const int64_t T = x_normed.size(0), d = c.head_dim;
  // Heads from the projection's width, not -1: a rank may have no tokens (T = 0).
  auto heads = [&](const torch::Tensor& t) { return t.view({T, t.size(1) / d, d}); };
  torch::Tensor q, k, v;
  if (w.qkv.defined()) {  // strided views of one product's columns
    const torch::Tensor all = linear(x_normed, w.qkv, w.fused_kernels);
    const int64_t nq = w["self_attn.q_proj.weight"].size(0), nk = w["self_attn.k_proj.weight"].size(0);
    q = heads(all.narrow(1, 0, nq));
    k = heads(all.narrow(1, nq, nk));
    v = heads(all.narrow(1, nq + nk, all.size(1) - nq - nk));
  } else {
    q = heads(linear(x_normed, w["self_attn.q_proj.weight"], w.fused_kernels));
    k = heads(linear(x_normed, w["self_attn.k_proj.weight"], w.fused_kernels));
    v = heads(linear(x_normed, w["self_attn.v_proj.weight"], w.fused_kernels));
  }
  if (w.fused_kernels && cache) {
    const std::vector<torch::Tensor>& parts = cache->cache->layer(w.layer);
    const int64_t width = k.size(1) * k.size(2);
    const KvRowsOut rows{parts.at(0).view({-1, width}), parts.at(1).view({-1, width}), v, cache->write_row};
    bool written = false;
    auto [q_out, k_out] = qk_norm_rope_pair_fused(q, w["self_attn.q_norm.weight"], k, w["self_attn.k_norm.weight"], cs,
                                                  c.rms_eps, rows, &written);
    return {q_out, k_out, v, written};
  }
  if (w.fused_kernels) {
    auto [q_out, k_out] =
        qk_norm_rope_pair_fused(q, w["self_attn.q_norm.weight"], k, w["self_attn.k_norm.weight"], cs, c.rms_eps);
    return {q_out, k_out, v};
  }
  q = rmsnorm(q, w["self_attn.q_norm.weight"], c.rms_eps);
  k = rmsnorm(k, w["self_attn.k_norm.weight"], c.rms_eps);
  return {apply_rope(q, cs, false), apply_rope(k, cs, false), v};
}

torch::Tensor qwen3_mlp(const ModelConfig& c, const LayerWeights& w, const torch::Tensor& x_normed, Routing* chosen) {
  if (!c.is_moe_layer(w.layer))
    return swiglu_mlp(x_normed, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"]);
  Routing routing;
  if (w.fused_kernels) {
    routing = fused_router_softmax_topk(x_normed, w["mlp.gate.weight"], c.experts_per_token, c.norm_topk_prob);
  } else {
    const torch::Tensor logits = torch::linear(x_normed, w["mlp.gate.weight"]);
    routing = route_softmax_topk(logits, c.experts_per_token, c.norm_topk_prob);
    routing.logits = logits;
  }
  if (chosen) *chosen = routing;
  return experts_forward(x_normed, routing, w.experts, w.fused_kernels);
}

torch::Tensor qwen3_layer(const ModelConfig& c, const LayerWeights& w, const Rope& rope, const torch::Tensor& x,
                          const TokenPlacement& tokens, Routing* chosen, LayerCapture* capture, const CacheStep* cache) {
  const InOrderCapture keep(capture, x);
  const torch::Tensor normed = w.fused_kernels ? rmsnorm_fused(x, w["input_layernorm.weight"], c.rms_eps)
                                               : rmsnorm(x, w["input_layernorm.weight"], c.rms_eps);
  QkvStates s = qwen3_qkv(c, w, rope, normed, tokens.pos, cache);
  torch::Tensor attn = gqa_attention(w, s.q, s.k, s.v, tokens, tokens, c.attention_scale(), cache, s.cache_written);
  torch::Tensor o = linear(attn.flatten(1), w["self_attn.o_proj.weight"], w.fused_kernels);
  // The residual add and the next norm, one kernel on the fused path.
  const auto [h, post] = add_rmsnorm(x, o, w["post_attention_layernorm.weight"], c.rms_eps, w.fused_kernels);
  Routing routing;
  torch::Tensor mlp = qwen3_mlp(c, w, post, &routing);
  if (chosen) *chosen = routing;
  torch::Tensor out = h + mlp;
  keep("attn_norm", normed), keep("q", s.q), keep("kv", s.k), keep("attn_out", attn), keep("o_proj", o);
  keep("residual", h);
  keep.routing(routing);
  keep("mlp_out", mlp), keep("layer_out", out);
  return out;
}

}  // namespace lb
