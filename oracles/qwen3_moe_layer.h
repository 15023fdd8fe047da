#pragma once
// Qwen3-MoE decoder layer math, in steps a layout can put communication between:
//   h = x + o_proj(attention(qkv(rmsnorm(x))));  y = h + moe(rmsnorm(h))
// Head and expert counts come from the weight shapes, so the same functions run on a shard.
#include "harness/model/model_config.h"
#include "kernels/attention.h"
#include "kernels/moe.h"
#include "kernels/rope.h"
#include "oracles/layer_weights.h"
#include "oracles/kv_cache.h"
#include "oracles/op_capture.h"

namespace lb {

struct QkvStates {
  torch::Tensor q, k, v;  // [T, heads, head_dim], q and k normed per head and rotated
  bool cache_written = false;  // k and v are already in the cache step's rows (see below)
};

// With `cache` (the tokens' own keys go to its write rows: no CP gather between), the fused path
// writes k and v to the cache in its q/k norm + RoPE launch where the kernel takes them, and says
// so in cache_written; gqa_attention then skips its write.
QkvStates qwen3_qkv(const ModelConfig& config, const LayerWeights& w, const Rope& rope, const torch::Tensor& x_normed,
                    const torch::Tensor& positions, const CacheStep* cache = nullptr);
// The same with the rotation's cos/sin of the positions given (computed once for every layer of a step).
QkvStates qwen3_qkv(const ModelConfig& config, const LayerWeights& w, const CosSin& cs, const torch::Tensor& x_normed,
                    const CacheStep* cache = nullptr);

// MoE (or the dense MLP of an mlp_only layer) on post-attention-normed states.
// `chosen`, when given, receives the MoE routing (left empty on dense layers).
torch::Tensor qwen3_mlp(const ModelConfig& config, const LayerWeights& w, const torch::Tensor& x_normed,
                        Routing* chosen = nullptr);

// The whole layer on one device; `capture`, when given, receives every capture point; `cache`, when
// given (generation), is this step's KV cache (oracles/cached_attention.h).
torch::Tensor qwen3_layer(const ModelConfig& config, const LayerWeights& w, const Rope& rope, const torch::Tensor& x,
                          const TokenPlacement& tokens, Routing* chosen = nullptr, LayerCapture* capture = nullptr,
                          const CacheStep* cache = nullptr);

}  // namespace lb
