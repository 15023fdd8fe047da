#pragma once
// A layer's attention in generation, on top of the KV cache (oracles/kv_cache.h): a step's new key
// rows are written to their slots, then a prefill attends causally to its own keys (its slots
// started empty) and a decode step's queries read their slots up to their lengths. Without a cache
// step, plain causal attention. The reference and every layout rank call these, so a layout differs
// from the reference only in which rows it holds and what it gathers.
#include "harness/model/model_config.h"
#include "kernels/attention.h"
#include "oracles/kv_cache.h"
#include "oracles/layer_weights.h"

namespace lb {

// Each cache part's shape after [slots, capacity] for a layer whose (possibly sharded) weights are `w`:
// Qwen: keys and values [Hkv, D]; DeepSeek: the latent [R] and the rotary key [P].
std::vector<std::vector<int64_t>> cache_part_shapes(const ModelConfig& config, const LayerWeights& w);

// Qwen (GQA): q [Tq, Hq, D] placed by q_tokens; k, v [Tk, Hkv, D] placed by k_tokens (pass the same
// object for self-attention, which takes flash attention on the fused path). `cache_written`: k
// and v are in the cache step's rows already (qwen3_qkv wrote them).
torch::Tensor gqa_attention(const LayerWeights& w, const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v, const TokenPlacement& q_tokens, const TokenPlacement& k_tokens,
                            double scale, const CacheStep* cache, bool cache_written = false);

// DeepSeek MLA: q [Tq, H, nope + rope]; the latent [Tk, R] and rotary key [Tk, P] of the keys.
// A decode step attends in the latent space with the up-projections absorbed when `absorbed`, else
// it expands every cached position into keys and values (the oracle form). Returns [Tq, H, v_head_dim].
torch::Tensor mla_attention(const ModelConfig& config, const LayerWeights& w, const torch::Tensor& q,
                            const torch::Tensor& latent, const torch::Tensor& k_pe, const TokenPlacement& q_tokens,
                            const TokenPlacement& k_tokens, const CacheStep* cache, bool absorbed);

}  // namespace lb
