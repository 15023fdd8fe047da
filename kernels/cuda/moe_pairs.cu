#include "kernels/cuda/moe_pairs.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

constexpr int kMaxThreads = 256;
// Weight packs (16 bytes each) a thread loads at once: enough in flight to cover memory latency,
// few enough registers for three blocks per SM (measured best on an H200 among 4-16).
constexpr int kPacksPerThread = 8;

// Block (row tile, pair p): the block's kRows output rows of kMats matrices are split along K over
// its threads (thread t holds packs t, t + blockDim, ...) and dotted with the pair's input row.
// kMats == 2: gate and up rows, input x[p / k], output silu(gate) * up * pair_weight[p]. It waits
// for the routing before reading anything and only then lets the down kernel start, so that the
// down kernel may read the routing (and its weights) before waiting.
// kMats == 1: down rows, input act[p]; the weights load before the wait for the gate/up kernel.
template <typename T, int kMats, int kRows, int kPpt>
__global__ void __launch_bounds__(kMaxThreads, 3) pair_rows_kernel(const T* in, const T* weight, T* out,
                                                                   const int64_t* experts, int64_t first_expert,
                                                                   int64_t held, const float* pair_weight,
                                                                   int64_t out_cols, int64_t K, int64_t k) {
  constexpr int V = 16 / sizeof(T);
  __shared__ float partial[kMaxThreads / 32][kMats * kRows];
  if (kMats == 2) {
    wait_for_previous_kernel();
    allow_next_kernel();
  }
  const int64_t p = blockIdx.y, row0 = int64_t(blockIdx.x) * kRows;
  const int64_t e = experts[p] - first_expert;
  if (e < 0 || e >= held) {
    if (kMats == 1) {
      wait_for_previous_kernel();
      allow_next_kernel();
      if (threadIdx.x < kRows && row0 + threadIdx.x < out_cols) out[p * out_cols + row0 + threadIdx.x] = from_f<T>(0.0f);
    }
    return;
  }
  Pack<T, V> w[kPpt][kMats][kRows];
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = row0 + r < out_cols ? row0 + r : row0;  // past the end: row0 again, never stored
      const T* base = weight + ((e * kMats + m) * out_cols + row) * K;
#pragma unroll
      for (int i = 0; i < kPpt; ++i) {
        const int64_t c = (int64_t(threadIdx.x) + int64_t(i) * blockDim.x) * V;
        w[i][m][r] = c < K ? load_pack<T, V>(base + c) : Pack<T, V>{};
      }
    }
  if (kMats == 1) {
    wait_for_previous_kernel();
    allow_next_kernel();
  }

  const T* x = in + (kMats == 2 ? p / k : p) * K;
  float acc[kMats][kRows] = {};
#pragma unroll
  for (int i = 0; i < kPpt; ++i) {
    const int64_t c = (int64_t(threadIdx.x) + int64_t(i) * blockDim.x) * V;
    if (c >= K) break;
    dot_packs(acc, w[i], load_pack<T, V>(x + c));
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float s = warp_sum(acc[m][r]);
      if (lane == 0) partial[warp][m * kRows + r] = s;
    }
  __syncthreads();
  if (threadIdx.x >= kRows || row0 + threadIdx.x >= out_cols) return;
  const int r = threadIdx.x;
  float sum[kMats] = {};
  for (int v = 0; v < int(blockDim.x / 32); ++v)
#pragma unroll
    for (int m = 0; m < kMats; ++m) sum[m] += partial[v][m * kRows + r];
  const float value = kMats == 2 ? silu(sum[0]) * sum[kMats - 1] * pair_weight[p] : sum[0];
  out[p * out_cols + row0 + r] = from_f<T>(value);
}

// The fewest packs per thread (1, 2 or 4) that cover K with at most kMaxThreads threads, and as
// many rows as keep kPacksPerThread weight packs per thread.
template <typename T, int kMats, int kPpt>
cudaError_t launch_with(const void* in, const void* weight, void* out, const int64_t* experts, int64_t first_expert,
                        int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols, int64_t K, int64_t k,
                        cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  constexpr int kRows = kPacksPerThread / (kMats * kPpt) > 0 ? kPacksPerThread / (kMats * kPpt) : 1;
  const int threads = int((K / V + kPpt - 1) / kPpt + 31) / 32 * 32;
  const dim3 grid(unsigned((out_cols + kRows - 1) / kRows), unsigned(pairs));
  return launch_chained(pair_rows_kernel<T, kMats, kRows, kPpt>, grid, dim3(unsigned(threads)), 0, s,
                        static_cast<const T*>(in), static_cast<const T*>(weight), static_cast<T*>(out), experts,
                        first_expert, held, pair_weight, out_cols, K, k);
}

template <typename T, int kMats>
cudaError_t launch(const void* in, const void* weight, void* out, const int64_t* experts, int64_t first_expert,
                   int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols, int64_t K, int64_t k,
                   cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  if (pairs == 0 || out_cols == 0) return cudaSuccess;
  if (K % V != 0 || pairs > 65535) return cudaErrorInvalidValue;
  const int64_t packs = K / V;
  if (packs <= kMaxThreads)
    return launch_with<T, kMats, 1>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k, s);
  if (packs <= 2 * kMaxThreads)
    return launch_with<T, kMats, 2>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k, s);
  if (packs <= 4 * kMaxThreads)
    return launch_with<T, kMats, 4>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k, s);
  return cudaErrorInvalidValue;
}

template <int kMats>
cudaError_t launch_dtype(Dtype dtype, const void* in, const void* weight, void* out, const int64_t* experts,
                         int64_t first_expert, int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols,
                         int64_t K, int64_t k, cudaStream_t s) {
  return with_element_type(dtype, [&](auto e) {
    return launch<typename decltype(e)::type, kMats>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k, s);
  });
}

}  // namespace

cudaError_t moe_pair_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* experts,
                             int64_t first_expert, int64_t held, const float* pair_weight, void* act, int64_t pairs,
                             int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream) {
  return launch_dtype<2>(dtype, x, gate_up, act, experts, first_expert, held, pair_weight, pairs, inter, hidden, k,
                         stream);
}

cudaError_t moe_pair_down(Dtype dtype, const void* act, const void* down, const int64_t* experts, int64_t first_expert,
                          int64_t held, void* y, int64_t pairs, int64_t hidden, int64_t inter, cudaStream_t stream) {
  return launch_dtype<1>(dtype, act, down, y, experts, first_expert, held, nullptr, pairs, hidden, inter, 1, stream);
}

bool moe_pair_rows_fit(Dtype dtype, int64_t hidden, int64_t inter) {
  const int64_t v = dtype == Dtype::F32 ? 4 : 8;
  return hidden % v == 0 && inter % v == 0 && hidden / v <= 4 * kMaxThreads && inter / v <= 4 * kMaxThreads;
}

}  // namespace lb::cuda
