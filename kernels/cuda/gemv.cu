#include "kernels/cuda/gemv.h"

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <cstdint>

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;
// 16-byte packs of its weight row each lane has in flight: 4 KB a warp. With up to 16 blocks on an
// SM that is far more than the copy bandwidth needs, and one pass covers a 2048-wide row.
constexpr int kUnroll = 8;

// One warp per output column n: its lanes split the weight row w[n] in 16-byte packs, every load
// issued before the first product, and the x rows (a few KB, read by every warp) come from L1.
template <typename T, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* x, const T* w, T* y, int64_t n, int64_t k) {
  constexpr int kVec = 8;
  const int lane = threadIdx.x % 32;
  const int64_t column = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (column >= n) return;
  const uint4* row = reinterpret_cast<const uint4*>(w + column * k);
  const int64_t packs = k / kVec;
  float acc[M] = {};
  for (int64_t first = 0; first < packs; first += 32 * kUnroll) {
    uint4 loaded[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + u * 32 + lane;
      loaded[u] = p < packs ? load_streaming(row + p) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + u * 32 + lane;
      if (p >= packs) continue;
      const Pack<T, kVec> weights = *reinterpret_cast<const Pack<T, kVec>*>(&loaded[u]);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const Pack<T, kVec> xs = load_pack<T, kVec>(x + m * k + p * kVec);
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[m] += to_f(weights.v[e]) * to_f(xs.v[e]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float total = warp_sum(acc[m]);
    if (lane == m) y[m * n + column] = from_f<T>(total);
  }
}

template <typename T, int M>
cudaError_t launch(const void* x, const void* w, void* y, int64_t n, int64_t k, cudaStream_t stream) {
  const int64_t blocks = (n + kWarps - 1) / kWarps;
  gemv_kernel<T, M><<<unsigned(blocks), kWarps * 32, 0, stream>>>(static_cast<const T*>(x), static_cast<const T*>(w),
                                                                   static_cast<T*>(y), n, k);
  return cudaGetLastError();
}

}  // namespace

cudaError_t gemv(Dtype dtype, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
                 cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  if (dtype == Dtype::F32 || m < 0 || m > kGemvMaxRows || k <= 0 || k % 8 != 0 || (n + kWarps - 1) / kWarps > INT32_MAX)
    return cudaErrorInvalidValue;
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      switch (m) {
        case 1: return launch<T, 1>(x, w, y, n, k, stream);
        case 2: return launch<T, 2>(x, w, y, n, k, stream);
        case 3: return launch<T, 3>(x, w, y, n, k, stream);
        default: return launch<T, 4>(x, w, y, n, k, stream);
      }
    }
  });
}

}  // namespace lb::cuda
