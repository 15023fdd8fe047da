#pragma once
// The launcher of the KV cache write kernel (kernels/cuda/cache_write.cu) behind
// write_cache_rows_fused (kernels/cache_write.h): a step's new rows of every part of one layer's
// cache in one launch, where one index_copy_ per part (and a copy of each strided view) took 2-3.
#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// The most parts one launch writes (Qwen3: keys and values; DeepSeek: latent and rotary key).
constexpr int kCacheWriteMaxParts = 4;

// One part: the step's row i is row_bytes bytes at src + i * src_stride (bytes); it goes to row
// at[i] of dst, which holds dst_rows packed rows of row_bytes.
struct CacheWritePart {
  const void* src;
  int64_t src_stride;
  void* dst;
  int64_t row_bytes;
  int64_t dst_rows;
};

// Copies rows 0..n-1 of every part (count <= kCacheWriteMaxParts) to the rows at[i] (int64 on the
// device) of their destinations; a row whose at[i] lies outside [0, dst_rows) is not written (the
// launch reads no device value on the host, so it cannot fail on one).
cudaError_t cache_write(const CacheWritePart* parts, int count, const int64_t* at, int64_t n, cudaStream_t stream);

}  // namespace lb::cuda
