#pragma once
// Decode attention over a KV cache preallocated per batch: each cache slot holds one sequence's
// keys at positions 0..cap-1 and a device tensor holds how many are valid. Nothing here reads a
// device value on the host and launch shapes depend on tensor shapes only, so a decode step that
// calls these can be captured in a CUDA graph and replayed with new lengths and cache contents.
// Rows with length 0 get zeros; lengths are clamped to [0, cap]. Slots must lie in the cache (the
// plain path fails on one outside; the kernels read nothing for it and write zeros).
#include <torch/torch.h>

namespace lb {

// GQA decode: query row i attends to keys 0..len[i]-1 of cache slot slot[i].
// q [n, Hq, D]; k_cache, v_cache [slots, cap, Hkv, D] (Hq a multiple of Hkv; query head h uses KV
// head h / (Hq / Hkv)); slot, len: int64 [n] on q's device. Scores, softmax and the weighted sum in
// fp32; returns [n, Hq, D] in q's dtype. `fused`: the split-K CUDA kernel where it applies
// (decode_attention_uses_kernel), else the plain path: gather each row's slot, upcast, masked
// softmax over all cap positions (the oracle, and the CPU path).
torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                               const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused);

// DeepSeek MLA decode with weight absorption (attention in the latent space): every head shares
// one latent row per position as its key and value. q_latent [n, H, R] (the no-RoPE query times
// the key up-projection W_UK, R = kv_lora_rank), q_pe [n, H, P] (the rotary part); latent_cache
// [slots, cap, R] (the normed compressed KV), pe_cache [slots, cap, P] (the rotary key).
// score(h, j) = scale * (q_latent[h] . latent[j] + q_pe[h] . pe[j]); returns the softmax-weighted
// latent rows [n, H, R] in q's dtype (the caller applies W_UV). Same len, slot and fused rules.
torch::Tensor decode_attention_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent_cache, const torch::Tensor& pe_cache,
                                   const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused);

// Whether `fused` runs the CUDA kernel for these inputs: CUDA tensors of one dtype (f32, bf16,
// f16), contiguous 16-byte aligned caches, and D 64, 128 or 256 (GQA) or R 512 and P 64 (MLA).
bool decode_attention_uses_kernel(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache);
bool decode_attention_mla_uses_kernel(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                      const torch::Tensor& latent_cache, const torch::Tensor& pe_cache);

// How the kernels cut the cap positions of each row: `chunks` chunks of `chunk` positions (a
// multiple of 16, at most 512), enough of them that `blocks_per_chunk` (rows x head groups) times
// `chunks` blocks reach about two per SM, and no more than the cap needs: a batch-1 step still
// spreads over the GPU while a batch-64 one is not cut into chunks it does not need.
struct DecodeSplit {
  int64_t chunk = 0;
  int64_t chunks = 0;
};
DecodeSplit decode_split(int64_t blocks_per_chunk, int64_t cap, int64_t sms);

}  // namespace lb
