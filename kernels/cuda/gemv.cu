#include "kernels/cuda/gemv.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace lb::cuda {

namespace {

// A product's value as y holds it: the dtype's rounding, widened again where y is fp32 (so that an
// fp32 y holds what torch::linear in the dtype and a copy to fp32 would).
template <typename T, typename Y> __device__ inline Y output_value(float sum) {
  if constexpr (std::is_same_v<Y, float>) {
    return round_to<T>(sum);
  } else {
    return from_f<T>(sum);
  }
}

// Rows of up to kStreamMaxPacks 16-byte packs (k <= 4096 in 16-bit types) take the streaming
// kernel; longer rows (DeepSeek-V3's 7168) the split kernel below.
constexpr int kStreamMaxPacks = 512;
constexpr int kStreamWarps = 8;

// Streaming kernel: one block of kStreamWarps warps per SM, each warp a group of R whole rows at a
// time (lane l holds packs l, l + 32, ... of each: P per row). Two groups load before the wait for
// the kernel before (a chained launch's head start, as the split kernel's many blocks get), and
// every later group's loads are issued before the products of the one before, so that each SM
// keeps its loads in flight from the first to the last. x: a lane's packs in registers for one
// short row, else in shared memory. Products run in the split kernel's order (lane by lane over its
// packs, element by element, then the warp sum). On an H200 the grid's ramp and its blocks'
// turnover were what the split kernel spent on Qwen3's 17-21 MB projections: alone on cold weights,
// q/k/v 6.4 us against 9.4 and o 5.8 against 6.4 (results/decode/decode_kernels_bench_b1_round3_76c78d0.json);
// the batch-1 decode step 0.418 / 0.420 ms against 0.428 / 0.428 with the split kernel, in one call
// (results/decode/bench_decode_qwen3-30b-a3b_4L_1gpu_bf16_fused_gemv-split{0,1}_run{1,2}.json, at 76c78d0).
template <typename T, typename Y, int M, int P, int R>
__global__ void __launch_bounds__(kStreamWarps * 32, 1) gemv_stream_kernel(const T* x, const T* w, Y* y, int64_t n,
                                                                          int64_t k) {
  constexpr int kVec = 8;
  // One short row of x sits in each lane's registers (its packs, as the weights'); else x in shared memory.
  constexpr bool kXInRegisters = M == 1 && P <= 8;
  __shared__ uint4 xs[kXInRegisters ? 1 : M][kXInRegisters ? 1 : P * 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t packs = k / kVec, groups = (n + R - 1) / R;
  const int64_t stride = int64_t(gridDim.x) * kStreamWarps;
  const uint4* w4 = reinterpret_cast<const uint4*>(w);
  const auto load_group = [&](int64_t group, uint4 (&buf)[R][P]) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = group * R + r;
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int64_t p = int64_t(i) * 32 + lane;
        buf[r][i] = row < n && p < packs ? load_streaming(w4 + row * packs + p) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  int64_t group = int64_t(blockIdx.x) * kStreamWarps + warp;
  uint4 cur[R][P], ahead[R][P];
  // The weights are no earlier kernel's output: the first two groups load while that kernel finishes.
  if (group < groups) load_group(group, cur);
  if (group + stride < groups) load_group(group + stride, ahead);
  allow_next_kernel();
  wait_for_previous_kernel();
  uint4 x1[kXInRegisters ? P : 1];
  if constexpr (kXInRegisters) {
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int64_t p = int64_t(i) * 32 + lane;
      x1[i] = p < packs ? reinterpret_cast<const uint4*>(x)[p] : make_uint4(0, 0, 0, 0);
    }
  } else {
    for (int i = threadIdx.x; i < M * P * 32; i += blockDim.x) {
      const int m = i / (P * 32), p = i % (P * 32);
      xs[m][p] = p < packs ? reinterpret_cast<const uint4*>(x + m * k)[p] : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();
  }
  while (group < groups) {
    float acc[R][M] = {};
#pragma unroll
    for (int i = 0; i < P; ++i)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4 xr = kXInRegisters ? x1[i] : xs[m][i * 32 + lane];
        const Pack<T, kVec> xv = *reinterpret_cast<const Pack<T, kVec>*>(&xr);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const Pack<T, kVec> wv = *reinterpret_cast<const Pack<T, kVec>*>(&cur[r][i]);
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[r][m] += to_f(wv.v[e]) * to_f(xv.v[e]);
        }
      }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float sum = warp_sum(acc[r][m]);
        if (lane == 0 && group * R + r < n) y[m * n + group * R + r] = output_value<T, Y>(sum);
      }
    group += stride;
    if (group >= groups) break;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < P; ++i) cur[r][i] = ahead[r][i];
    if (group + stride < groups) load_group(group + stride, ahead);
  }
}

template <typename T, typename Y, int M, int P>
cudaError_t launch_stream(const void* x, const void* w, void* y, int64_t n, int64_t k, cudaStream_t stream) {
  // 16 packs a lane in flight (two buffers of R x P): more rows a group where the rows are short.
  constexpr int R = 16 / P;
  int device = 0, sms = 0;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (const cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); e != cudaSuccess)
    return e;
  const int64_t groups = (n + R - 1) / R;
  const int64_t blocks = std::min<int64_t>(sms, (groups + kStreamWarps - 1) / kStreamWarps);
  return launch_chained(gemv_stream_kernel<T, Y, M, P, R>, dim3(unsigned(blocks)), dim3(kStreamWarps * 32), 0, stream,
                        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<Y*>(y), n, k);
}

template <typename T, typename Y, int M>
cudaError_t launch_stream_for(const void* x, const void* w, void* y, int64_t n, int64_t k, cudaStream_t stream) {
  const int64_t packs = k / 8;
  if (packs <= 4 * 32) return launch_stream<T, Y, M, 4>(x, w, y, n, k, stream);
  if (packs <= 8 * 32) return launch_stream<T, Y, M, 8>(x, w, y, n, k, stream);
  return launch_stream<T, Y, M, 16>(x, w, y, n, k, stream);
}

// The split kernel, for longer rows.
constexpr int kWarps = 4;
// 16-byte packs of its weight row each lane has in flight: 4 KB a warp; one pass covers a
// 2048-wide row.
constexpr int kUnroll = 8;
// Warps a launch aims for: ~32 per SM of an H200 (132 SMs), 4 KB of loads in flight each.
constexpr int64_t kWantedWarps = 4096;

// Block: kWarps / split columns, each taken by `split` warps that cut its weight row in `split`
// parts of whole passes. A warp's lanes split its part in 16-byte packs, every load of a pass issued
// before the first product; the x rows (a few KB, read by every warp) come from L1. Narrow outputs
// with long rows (DeepSeek-V3's kv_a: 576 x 7168) take split 4, so that enough loads are in flight
// over the GPU.
template <typename T, typename Y, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* x, const T* w, Y* y, int64_t n, int64_t k,
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
        if (lane == m) y[m * n + column] = output_value<T, Y>(acc[m]);
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
    if (lane == m) y[m * n + column] = output_value<T, Y>(total);
}

// Warps per column: 1 where the columns alone give every SM dozens of warps, else up to kWarps (a
// part has at least one whole pass).
int split_for(int64_t n, int64_t k) {
  const int64_t passes = (k / 8 + 32 * kUnroll - 1) / (32 * kUnroll);
  int split = 1;
  while (split < kWarps && n * split < kWantedWarps && passes >= 2 * split) split *= 2;
  return split;
}

template <typename T, typename Y, int M>
cudaError_t launch(const void* x, const void* w, void* y, int64_t n, int64_t k, cudaStream_t stream) {
  if (gemv_streams(k)) return launch_stream_for<T, Y, M>(x, w, y, n, k, stream);
  const int split = split_for(n, k);
  const int64_t columns_per_block = kWarps / split;
  const int64_t blocks = (n + columns_per_block - 1) / columns_per_block;
  return launch_chained(gemv_kernel<T, Y, M>, dim3(unsigned(blocks)), dim3(kWarps * 32), 0, stream,
                        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<Y*>(y), n, k, split);
}

template <typename T, typename Y>
cudaError_t launch_rows(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  switch (m) {
    case 1: return launch<T, Y, 1>(x, w, y, n, k, stream);
    case 2: return launch<T, Y, 2>(x, w, y, n, k, stream);
    case 3: return launch<T, Y, 3>(x, w, y, n, k, stream);
    default: return launch<T, Y, 4>(x, w, y, n, k, stream);
  }
}

}  // namespace

bool gemv_streams(int64_t k) { return k / 8 <= kStreamMaxPacks; }

cudaError_t gemv(Dtype dtype, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
                 cudaStream_t stream, bool y_f32) {
  if (m == 0 || n == 0) return cudaSuccess;
  if (dtype == Dtype::F32 || m < 0 || m > kGemvMaxRows || k <= 0 || k % 8 != 0 || (n + kWarps - 1) / kWarps > INT32_MAX)
    return cudaErrorInvalidValue;
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      return y_f32 ? launch_rows<T, float>(x, w, y, m, n, k, stream) : launch_rows<T, T>(x, w, y, m, n, k, stream);
    }
  });
}

}  // namespace lb::cuda
