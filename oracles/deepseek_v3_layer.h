#pragma once
// DeepSeek-V3 decoder layer math (MLA attention; dense SwiGLU or grouped-router MoE with shared
// experts), in steps a layout can put communication between. Head counts come from the weight
// shapes, so the same functions run on a head shard.
#include "harness/model/model_config.h"
#include "kernels/attention.h"
#include "kernels/moe.h"
#include "kernels/rope.h"
#include "oracles/layer_weights.h"
#include "oracles/kv_cache.h"
#include "oracles/op_capture.h"

namespace lb {

// What MLA computes per token before keys are expanded: a context-parallel layout gathers the
// (small) latent and k_pe across ranks instead of full keys.
struct MlaLatent {
  torch::Tensor q;       // [T, heads, qk_nope + qk_rope], rope part rotated
  torch::Tensor latent;  // [T, kv_lora_rank], after kv_a_layernorm
  torch::Tensor k_pe;    // [T, qk_rope], rotated, shared by all heads
};

MlaLatent mla_latent(const ModelConfig& config, const LayerWeights& w, const Rope& rope, const torch::Tensor& x_normed,
                     const torch::Tensor& positions);
// The same with the rotation's cos/sin of the positions given (computed once for every layer of a step).
MlaLatent mla_latent(const ModelConfig& config, const LayerWeights& w, const Rope& rope, const CosSin& cs,
                     const torch::Tensor& x_normed);

// Keys [T, heads, qk_nope + qk_rope] and values [T, heads, v_head_dim] from latents.
std::pair<torch::Tensor, torch::Tensor> mla_expand_kv(const ModelConfig& config, const LayerWeights& w,
                                                      const torch::Tensor& latent, const torch::Tensor& k_pe);

// `chosen`, when given, receives the MoE routing (left empty on dense layers).
torch::Tensor deepseek_mlp(const ModelConfig& config, const LayerWeights& w, const torch::Tensor& x_normed,
                        Routing* chosen = nullptr);

// `cache`, when given (generation), is this step's KV cache of latents and rotary keys
// (oracles/cached_attention.h); a decode step attends in the latent space when `absorbed`.
torch::Tensor deepseek_layer(const ModelConfig& config, const LayerWeights& w, const Rope& rope,
                             const torch::Tensor& x, const TokenPlacement& tokens, Routing* chosen = nullptr,
                             LayerCapture* capture = nullptr, const CacheStep* cache = nullptr,
                             bool absorbed = false);

}  // namespace lb
