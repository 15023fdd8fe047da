#pragma once
// Launchers of the CUDA norm and RoPE kernels (kernels/cuda/norm_rope.cu), on raw device pointers
// so that this header and the .cu file need no LibTorch. kernels/fused_norm.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// y = w * round(x * rsqrt(mean(x^2) + eps)) per row of `cols`, the sum in fp32; with `residual`,
// x is first replaced by h = round(x + residual), written to `h_out`. Rounding to the dtype
// happens where the LibTorch reference rounds, so the two agree to the last bit or so.
cudaError_t rmsnorm(Dtype dtype, const void* x, const void* residual, const void* w, void* h_out, void* y, int64_t rows,
                    int64_t cols, float eps, cudaStream_t stream);

// Per row of `dim` (one head of one token): Qwen3's per-head RMSNorm, then rotate_half RoPE with
// that token's cos and sin rows ([tokens, dim], the row's token is row / heads). A token's heads
// are packed in x, tokens x_stride elements apart; y is [tokens, heads, dim] packed.
cudaError_t qk_norm_rope(Dtype dtype, const void* x, int64_t x_stride, const void* w, const void* cos, const void* sin,
                         void* y, int64_t tokens, int64_t heads, int64_t dim, float eps, cudaStream_t stream);

// One set of heads for qk_norm_rope_pair: `heads` rows of dim per token in x (tokens x_stride
// elements apart), their norm weight w [dim], and y [tokens, heads, dim] packed.
struct QkHeads {
  const void* x;
  int64_t x_stride;
  const void* w;
  void* y;
  int64_t heads;
};

// qk_norm_rope on two sets of heads (Qwen3's q and k, each with its own norm weight) with the same
// cos and sin, in one launch: the same values as two calls.
cudaError_t qk_norm_rope_pair(Dtype dtype, const QkHeads& a, const QkHeads& b, const void* cos, const void* sin,
                              int64_t tokens, int64_t dim, float eps, cudaStream_t stream);

// Where qk_norm_rope_pair_to_cache also writes set b's rows (the keys) and the values: rows at[t]
// of k and v ([rows, b.heads * dim] packed), token t's values at v_src + t * v_stride (b.heads *
// dim packed); a token whose at[t] lies outside [0, rows) is not written.
struct QkCacheRows {
  void* k;
  void* v;
  const void* v_src;
  int64_t v_stride;
  const int64_t* at;
  int64_t rows;
};

// Whether qk_norm_rope_pair_to_cache takes heads of this size (64, 128, 256).
bool qk_norm_rope_to_cache_fits(int64_t dim);

// qk_norm_rope_pair, and the new keys and values written to the KV cache in the same launch (the
// same bits as the two apart): a decode step's cache write is no launch of its own.
cudaError_t qk_norm_rope_pair_to_cache(Dtype dtype, const QkHeads& a, const QkHeads& b, const void* cos,
                                       const void* sin, const QkCacheRows& cache, int64_t tokens, int64_t dim,
                                       float eps, cudaStream_t stream);

}  // namespace lb::cuda
