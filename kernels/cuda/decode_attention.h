#pragma once
// Launchers of the split-K ("flash decoding") attention kernels over a preallocated KV cache
// (kernels/cuda/decode_attention.cu); kernels/decode_attention.h wraps them. Each query row reads
// its cache slot and valid length from device memory, and the grid depends on shapes only, so a
// call can be captured in a CUDA graph and replayed with new lengths. The keys of each row are cut
// into `chunks` chunks of `chunk` positions: one block per (row, heads, chunk) writes the chunk's
// unnormalized weighted sum and its softmax max and sum to the partials, and a second kernel
// merges the chunks of each (row, head). Blocks whose chunk starts past the row's length exit at
// once, and the merge ignores them; a row with no keys (length 0, or a slot outside the cache)
// gets zeros. Lengths are clamped to [0, cap].
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// The most positions one block takes (its scores sit in shared memory).
constexpr int64_t kDecodeMaxChunk = 512;
// Query heads of one KV head that one GQA block takes; more heads per KV head take more blocks.
constexpr int64_t kGqaHeadsPerBlock = 8;
// Heads one MLA block takes; each latent row read serves all of them. f32: two per warp on CUDA
// cores; bf16 and f16: four m16 tiles on tensor cores.
constexpr int64_t kMlaHeadsPerBlock = 16;
constexpr int64_t kMlaTcHeadsPerBlock = 64;

// Where the chunks' results go: acc [rows * heads, chunks, value_dim] and max_sum [rows * heads,
// chunks, 2] (the chunk's score max and sum of exp(score - max)), fp32.
struct DecodePartials {
  float* acc;
  float* max_sum;
};

// The head sizes the GQA kernel takes.
bool gqa_decode_supports(int64_t head_dim);

// q [n, heads, head_dim]; k, v [slots, cap, kv_heads, head_dim]; slot, len int64 [n]; out [n, heads,
// head_dim] in q's dtype. Query head h uses KV head h / (heads / kv_heads). Pointers 16-byte aligned.
cudaError_t gqa_decode_attention(Dtype dtype, const void* q, const void* k, const void* v, const int64_t* slot,
                                 const int64_t* len, DecodePartials partials, void* out, int64_t n, int64_t heads,
                                 int64_t kv_heads, int64_t head_dim, int64_t slots, int64_t cap, int64_t chunk,
                                 int64_t chunks, float scale, cudaStream_t stream);

// The MLA sizes the kernel takes (DeepSeek-V3's latent rank and rotary size).
bool mla_decode_supports(int64_t rank, int64_t rope_dim);
// Heads per MLA block for this dtype: the launch's blocks are rows x ceil(heads / this) x chunks.
int64_t mla_heads_per_block(Dtype dtype);

// q_latent [n, heads, rank], q_pe [n, heads, rope_dim]; latent [slots, cap, rank], pe [slots, cap,
// rope_dim]; out [n, heads, rank] = softmax(scale * (q_latent . latent + q_pe . pe)) . latent.
cudaError_t mla_decode_attention(Dtype dtype, const void* q_latent, const void* q_pe, const void* latent,
                                 const void* pe, const int64_t* slot, const int64_t* len, DecodePartials partials,
                                 void* out, int64_t n, int64_t heads, int64_t rank, int64_t rope_dim, int64_t slots,
                                 int64_t cap, int64_t chunk, int64_t chunks, float scale, cudaStream_t stream);

}  // namespace lb::cuda
