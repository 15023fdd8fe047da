#include "oracles/deepseek_v3_layer.h"

#include "kernels/fused_moe.h"
#include "kernels/fused_norm.h"
#include "kernels/fused_routing.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/small_linear.h"
#include "oracles/cached_attention.h"

namespace lb {

MlaLatent mla_latent(const ModelConfig& c, const LayerWeights& w, const Rope& rope, const torch::Tensor& x_normed,
                     const torch::Tensor& positions) {
  return mla_latent(c, w, rope, rope_cos_sin(rope, positions, x_normed.scalar_type()), x_normed);
}

MlaLatent mla_latent(const ModelConfig& c, const LayerWeights& w, const Rope& rope, const CosSin& cs,
                     const torch::Tensor& x_normed) {
  const int64_t T = x_normed.size(0);
  const bool fused = w.fused_kernels;
  // The latent norms in one kernel each on the fused path (five LibTorch ops apiece otherwise: two
  // of them a layer were ~40 of a batch-1 step's kernels, results/decode/trace_decode_deepseek-v3_*;
  // H200, 4 layers: batch 1 / 8 / 64 2.02 / 3.27 / 7.09 ms a step against 2.08 / 3.37 / 7.17,
  // results/decode/bench_decode_deepseek-v3_4L_1gpu_bf16_fused_mla-*-norms_e236227.json).
  const auto norm = [&](const torch::Tensor& x, const char* weight) {
    return fused ? rmsnorm_fused(x, w[weight], c.rms_eps) : rmsnorm(x, w[weight], c.rms_eps);
  };
  torch::Tensor q = c.q_lora_rank > 0 ? linear(norm(linear(x_normed, w["self_attn.q_a_proj.weight"], fused),
                                                    "self_attn.q_a_layernorm.weight"),
                                               w["self_attn.q_b_proj.weight"], fused)
                                      : linear(x_normed, w["self_attn.q_proj.weight"], fused);
  q = q.view({T, q.size(1) / c.qk_head_dim(), c.qk_head_dim()});  // not -1: T may be 0
  torch::Tensor compressed = linear(x_normed, w["self_attn.kv_a_proj_with_mqa.weight"], fused);
  torch::Tensor latent = norm(compressed.narrow(1, 0, c.kv_lora_rank), "self_attn.kv_a_layernorm.weight");
  torch::Tensor k_pe = compressed.narrow(1, c.kv_lora_rank, c.qk_rope_head_dim).unsqueeze(1);  // one shared head
  torch::Tensor q_pe = apply_rope(q.narrow(2, c.qk_nope_head_dim, c.qk_rope_head_dim), cs, rope.interleaved);
  q = torch::cat({q.narrow(2, 0, c.qk_nope_head_dim), q_pe}, 2);
  return {q, latent, apply_rope(k_pe, cs, rope.interleaved).squeeze(1)};
}

std::pair<torch::Tensor, torch::Tensor> mla_expand_kv(const ModelConfig& c, const LayerWeights& w,
                                                      const torch::Tensor& latent, const torch::Tensor& k_pe) {
  const int64_t T = latent.size(0);
  const int64_t per_head = c.qk_nope_head_dim + c.v_head_dim;
  torch::Tensor kv = torch::linear(latent, w["self_attn.kv_b_proj.weight"]);
  kv = kv.view({T, kv.size(1) / per_head, per_head});
  const int64_t heads = kv.size(1);
  torch::Tensor k_nope = kv.narrow(2, 0, c.qk_nope_head_dim);
  torch::Tensor v = kv.narrow(2, c.qk_nope_head_dim, c.v_head_dim);
  torch::Tensor k = torch::cat({k_nope, k_pe.unsqueeze(1).expand({T, heads, c.qk_rope_head_dim})}, 2);
  return {k, v.contiguous()};
}

torch::Tensor deepseek_mlp(const ModelConfig& c, const LayerWeights& w, const torch::Tensor& x_normed, Routing* chosen) {
  if (!c.is_moe_layer(w.layer))
    return swiglu_mlp(x_normed, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"]);
  // The router runs in fp32 whatever the activation dtype (as transformers).
  torch::Tensor logits = torch::linear(x_normed.to(torch::kFloat32), w["mlp.gate.weight"].to(torch::kFloat32));
  const auto route = w.fused_kernels ? fused_route_sigmoid_grouped : route_sigmoid_grouped;
  Routing routing = route(logits, w["mlp.gate.e_score_correction_bias"], c.n_group, c.topk_group, c.experts_per_token,
                          c.norm_topk_prob, c.routed_scaling_factor);
  if (chosen) {
    *chosen = routing;
    chosen->logits = logits;
  }
  torch::Tensor out = experts_forward(x_normed, routing, w.experts, w.fused_kernels);
  if (c.n_shared_experts > 0)
    out = out + swiglu_mlp(x_normed, w["mlp.shared_experts.gate_proj.weight"], w["mlp.shared_experts.up_proj.weight"],
                           w["mlp.shared_experts.down_proj.weight"]);
  return out;
}

torch::Tensor deepseek_layer(const ModelConfig& c, const LayerWeights& w, const Rope& rope, const torch::Tensor& x,
                             const TokenPlacement& tokens, Routing* chosen, LayerCapture* capture,
                             const CacheStep* cache, bool absorbed) {
  const InOrderCapture keep(capture, x);
  const torch::Tensor normed = rmsnorm(x, w["input_layernorm.weight"], c.rms_eps);
  MlaLatent m = mla_latent(c, w, rope, normed, tokens.pos);
  torch::Tensor attn = mla_attention(c, w, m.q, m.latent, m.k_pe, tokens, tokens, cache, absorbed);
  torch::Tensor o = linear(attn.flatten(1), w["self_attn.o_proj.weight"], w.fused_kernels);
  torch::Tensor h = x + o;
  Routing routing;
  torch::Tensor mlp = deepseek_mlp(c, w, rmsnorm(h, w["post_attention_layernorm.weight"], c.rms_eps), &routing);
  if (chosen) *chosen = routing;
  torch::Tensor out = h + mlp;
  keep("attn_norm", normed), keep("q", m.q), keep("kv", torch::cat({m.latent, m.k_pe}, 1)), keep("attn_out", attn);
  keep("o_proj", o), keep("residual", h);
  keep.routing(routing);
  keep("mlp_out", mlp), keep("layer_out", out);
  return out;
}

}  // namespace lb
