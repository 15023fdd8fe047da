#include "kernels/cuda/gemv.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <cstdint>

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;
// 16-byte packs of its weight row each lane has in flight: 4 KB a warp; one pass covers a
// 2048-wide row. (On an H200 Qwen3's q/k/v and o products still read at under 2 TB/s: at 17-21 MB
// the launch and the ramp of the grid cost about as much as the bytes.)
constexpr int kUnroll = 8;
// Warps a launch aims for: ~32 per SM of an H200 (132 SMs), 4 KB of loads in flight each.
constexpr int64_t kWantedWarps = 4096;

// Block: kWarps / split columns, each taken by `split` warps that cut its weight row in `split`
// parts of whole passes. A warp's lanes split its part in 16-byte packs, every load of a pass issued
// before the first product; the x rows (a few KB, read by every warp) come from L1. Narrow outputs
// with long rows (DeepSeek-V3's kv_a: 576 x 7168) take split 4, so that enough loads are in flight
// over the GPU.
template <typename T, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* x, const T* w, T* y, int64_t n, int64_t k,
                                                           int split) {
  constexpr int kVec = 8;
  __shared__ float partial[kWarps][M];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t column = int64_t(blockIdx.x) * (kWarps / split) + warp / split;
  const int part = warp % split;
  const int64_t packs = k / kVec;
  const int64_t passes = (packs + 32 * kUnroll - 1) / (32 * kUnroll);
  const int64_t pass_begin = passes * part / split, pass_end = passes * (part + 1) / split;
  const uint4* row = reinterpret_cast<const uint4*>(w + (column < n ? column : 0) * k);
  uint4 loaded[kUnroll];
  const auto load_pass = [&](int64_t first) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t p = first + u * 32 + lane;
      loaded[u] = p < packs && column < n ? load_streaming(row + p) : make_uint4(0, 0, 0, 0);
    }
  };
  // The weights are no earlier kernel's output: the first pass loads while that kernel finishes.
  allow_next_kernel();
  load_pass(pass_begin * 32 * kUnroll);
  wait_for_previous_kernel();
  float acc[M] = {};
  if (column < n) {
    for (int64_t first = pass_begin * 32 * kUnroll; first < pass_end * 32 * kUnroll; first += 32 * kUnroll) {
      if (first != pass_begin * 32 * kUnroll) load_pass(first);
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
  }
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = warp_sum(acc[m]);
  if (split == 1) {
    if (column < n && lane < M)
#pragma unroll
      for (int m = 0; m < M; ++m)
        if (lane == m) y[m * n + column] = from_f<T>(acc[m]);
    return;
  }
  if (lane == 0)
#pragma unroll
    for (int m = 0; m < M; ++m) partial[warp][m] = acc[m];
  __syncthreads();
  if (part != 0 || column >= n || lane >= M) return;
  float total = 0.0f;
  for (int w2 = warp; w2 < warp + split; ++w2)
#pragma unroll
    for (int m = 0; m < M; ++m)
      if (lane == m) total += partial[w2][m];
#pragma unroll
  for (int m = 0; m < M; ++m)
    if (lane == m) y[m * n + column] = from_f<T>(total);
}

// Warps per column: 1 where the columns alone give every SM dozens of warps, else up to kWarps (a
// part has at least one whole pass).
int split_for(int64_t n, int64_t k) {
  const int64_t passes = (k / 8 + 32 * kUnroll - 1) / (32 * kUnroll);
  int split = 1;
  while (split < kWarps && n * split < kWantedWarps && passes >= 2 * split) split *= 2;
  return split;
}

template <typename T, int M>
cudaError_t launch(const void* x, const void* w, void* y, int64_t n, int64_t k, cudaStream_t stream) {
  const int split = split_for(n, k);
  const int64_t columns_per_block = kWarps / split;
  const int64_t blocks = (n + columns_per_block - 1) / columns_per_block;
  return launch_chained(gemv_kernel<T, M>, dim3(unsigned(blocks)), dim3(kWarps * 32), 0, stream,
                        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y), n, k, split);
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
