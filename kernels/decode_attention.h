#pragma once
// Decode attention over a preallocated KV cache (oracles/kv_cache.h): each query row attends to the
// first len[i] positions of its cache slot. Lengths and slots stay on the device and the launch shape
// comes from tensor shapes only, so a decode step can be captured in a CUDA graph and replayed.
#include <torch/torch.h>

namespace lb {

// GQA: q [n, Hq, D]; k_cache, v_cache [slots, cap, Hkv, D]; slot, len int64 [n] (len 0: zeros).
// Query head h uses KV head h / (Hq / Hkv). fp32 scores, softmax and sum; returns [n, Hq, D] in q's dtype.
torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                               const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused);

// MLA with the key and value up-projections absorbed: q_latent [n, H, R], q_pe [n, H, P];
// latent_cache [slots, cap, R], pe_cache [slots, cap, P]. Returns the softmax-weighted latent rows [n, H, R].
torch::Tensor decode_attention_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent_cache, const torch::Tensor& pe_cache,
                                   const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused);

}  // namespace lb
