#include "kernels/cuda/cache_write.h"

#include "kernels/cuda/chained_launch.cuh"

#include <cstdint>

namespace lb::cuda {

namespace {

struct CacheWriteParams {
  CacheWritePart parts[kCacheWriteMaxParts];
  const int64_t* at;
};

// A row is a few hundred bytes to a few KB (Qwen3: 1 KB of keys per token), so one block per
// (row, part) and a few of its threads are enough.
constexpr int kCacheWriteThreads = 128;

// Block (row i, part p) copies the row in units of U: the widest that every address, stride and
// row size of the launch is a multiple of (16 bytes for the models' caches).
template <typename U>
__global__ void __launch_bounds__(kCacheWriteThreads) cache_write_kernel(CacheWriteParams p) {
  allow_next_kernel();
  wait_for_previous_kernel();
  const CacheWritePart part = p.parts[blockIdx.y];
  const int64_t i = blockIdx.x, to = p.at[i];
  if (to < 0 || to >= part.dst_rows) return;
  const U* src = reinterpret_cast<const U*>(static_cast<const char*>(part.src) + i * part.src_stride);
  U* dst = reinterpret_cast<U*>(static_cast<char*>(part.dst) + to * part.row_bytes);
  const int64_t units = part.row_bytes / int64_t(sizeof(U));
  for (int64_t x = threadIdx.x; x < units; x += blockDim.x) dst[x] = src[x];
}

template <typename U> cudaError_t launch(const CacheWriteParams& params, int count, int64_t n, cudaStream_t stream) {
  return launch_chained(cache_write_kernel<U>, dim3(unsigned(n), unsigned(count)), dim3(kCacheWriteThreads), 0, stream,
                        params);
}

}  // namespace

cudaError_t cache_write(const CacheWritePart* parts, int count, const int64_t* at, int64_t n, cudaStream_t stream) {
  if (count < 0 || count > kCacheWriteMaxParts || n < 0 || n > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  if (count == 0 || n == 0) return cudaSuccess;
  CacheWriteParams params{};
  params.at = at;
  uint64_t bits = 0;  // every address, stride and size OR-ed: its lowest set bit bounds the unit
  for (int p = 0; p < count; ++p) {
    const CacheWritePart& part = parts[p];
    if (part.row_bytes < 0 || part.dst_rows < 0) return cudaErrorInvalidValue;
    params.parts[p] = part;
    bits |= reinterpret_cast<uintptr_t>(part.src) | reinterpret_cast<uintptr_t>(part.dst) |
            uint64_t(part.src_stride) | uint64_t(part.row_bytes);
  }
  if (bits % 16 == 0) return launch<uint4>(params, count, n, stream);
  if (bits % 8 == 0) return launch<uint2>(params, count, n, stream);
  if (bits % 4 == 0) return launch<uint32_t>(params, count, n, stream);
  if (bits % 2 == 0) return launch<uint16_t>(params, count, n, stream);
  return launch<uint8_t>(params, count, n, stream);
}

}  // namespace lb::cuda
