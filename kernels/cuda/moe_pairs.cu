#include "kernels/cuda/moe_pairs.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <cstdlib>
#include <cstring>

namespace lb::cuda {

namespace {

constexpr int kMaxThreads = 256;
// Weight packs (16 bytes each) a thread loads at once: enough in flight to cover memory latency,
// few enough registers for three blocks per SM (measured best on an H200 among 4-16).
constexpr int kPacksPerThread = 8;

// L2 policies for the weights (sm_90): the gate/up kernel prefetches the down weights of its pairs
// into L2 as soon as it knows the experts, to stay there (evict_last) while its own weights stream
// past them (evict_first); the down kernel then reads them from L2 (evict_first: dropped once used).
// Without the prefetch the down kernel's loads start only when gate/up's blocks leave the SMs, and
// HBM idles at that edge.
__device__ inline uint64_t l2_policy_evict_first() {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
#endif
  return policy;
}
__device__ inline uint64_t l2_policy_evict_last() {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
#endif
  return policy;
}
constexpr int64_t kPrefetchMaxBytes = int64_t(32) << 20;

template <typename T, int V> __device__ inline Pack<T, V> load_pack_hinted(const T* p, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  static_assert(sizeof(Pack<T, V>) == 16, "16-byte packs");
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "l"(policy));
  return *reinterpret_cast<const Pack<T, V>*>(&v);
#else
  (void)policy;
  return load_pack<T, V>(p);
#endif
}
// `bytes` (a multiple of 16) from p on their way into L2, in one instruction.
__device__ inline void prefetch_l2(const void* p, uint32_t bytes, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(p), "r"(bytes), "l"(policy)
               : "memory");
#else
  (void)p, (void)bytes, (void)policy;
#endif
}

// Block (row tile, pair p): the block's kRows output rows of kMats matrices are split along K over
// its threads (thread t holds packs t, t + blockDim, ...) and dotted with the pair's input row.
// kMats == 2: gate and up rows, input x[p / k], output silu(gate) * up * pair_weight[p]. It waits
// for the routing before reading anything and only then lets the down kernel start, so that the
// down kernel may read the routing (and its weights) before waiting.
// kMats == 1: down rows, input act[p]; the weights load before the wait for the gate/up kernel.
// kHinted (16-bit types): the weights load with the L2 policies above, and with `prefetch` (the
// down weights, `prefetch_bytes` an expert) each gate/up block sends its share of its expert's down
// matrix into L2.
template <typename T, int kMats, int kRows, int kPpt, bool kHinted>
__global__ void __launch_bounds__(kMaxThreads, 3) pair_rows_kernel(const T* in, const T* weight, T* out,
                                                                   const int64_t* experts, int64_t first_expert,
                                                                   int64_t held, const float* pair_weight,
                                                                   int64_t out_cols, int64_t K, int64_t k,
                                                                   const T* prefetch, int64_t prefetch_bytes) {
  constexpr int V = 16 / sizeof(T);
  __shared__ float partial[kMaxThreads / 32][kMats * kRows];
  if (kMats == 2) {
    wait_for_previous_kernel();
    allow_next_kernel();
  }
  const int64_t p = blockIdx.y, row0 = int64_t(blockIdx.x) * kRows;
  const int64_t e = experts[p] - first_expert;
  if (kHinted && prefetch != nullptr && threadIdx.x == 0 && e >= 0 && e < held) {
    const int64_t share = (prefetch_bytes / gridDim.x + 15) / 16 * 16, from = share * blockIdx.x;
    const int64_t bytes = from + share <= prefetch_bytes ? share : prefetch_bytes - from;
    if (bytes > 0)
      prefetch_l2(reinterpret_cast<const char*>(prefetch) + e * prefetch_bytes + from, uint32_t(bytes),
                  l2_policy_evict_last());
  }
  if (e < 0 || e >= held) {
    if (kMats == 1) {
      wait_for_previous_kernel();
      allow_next_kernel();
      if (threadIdx.x < kRows && row0 + threadIdx.x < out_cols) out[p * out_cols + row0 + threadIdx.x] = from_f<T>(0.0f);
    }
    return;
  }
  Pack<T, V> w[kPpt][kMats][kRows];
  const uint64_t policy = kHinted ? l2_policy_evict_first() : 0;
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = row0 + r < out_cols ? row0 + r : row0;  // past the end: row0 again, never stored
      const T* base = weight + ((e * kMats + m) * out_cols + row) * K;
#pragma unroll
      for (int i = 0; i < kPpt; ++i) {
        const int64_t c = (int64_t(threadIdx.x) + int64_t(i) * blockDim.x) * V;
        if constexpr (kHinted) {
          w[i][m][r] = c < K ? load_pack_hinted<T, V>(base + c, policy) : Pack<T, V>{};
        } else {
          w[i][m][r] = c < K ? load_pack<T, V>(base + c) : Pack<T, V>{};
        }
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
  const float value = kMats == 2 ? sum[0] / (1.0f + __expf(-sum[0])) * sum[kMats - 1] * pair_weight[p] : sum[0];
  out[p * out_cols + row0 + r] = from_f<T>(value);
}

// The fewest packs per thread (1, 2 or 4) that cover K with at most kMaxThreads threads, and as
// many rows as keep kPacksPerThread weight packs per thread.
template <typename T, int kMats, int kPpt>
cudaError_t launch_with(const void* in, const void* weight, void* out, const int64_t* experts, int64_t first_expert,
                        int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols, int64_t K, int64_t k,
                        const void* prefetch, int64_t prefetch_bytes, cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  constexpr int kRows = kPacksPerThread / (kMats * kPpt) > 0 ? kPacksPerThread / (kMats * kPpt) : 1;
  const int threads = int((K / V + kPpt - 1) / kPpt + 31) / 32 * 32;
  const dim3 grid(unsigned((out_cols + kRows - 1) / kRows), unsigned(pairs));
  const auto go = [&](auto kernel) {
    return launch_chained(kernel, grid, dim3(unsigned(threads)), 0, s, static_cast<const T*>(in),
                          static_cast<const T*>(weight), static_cast<T*>(out), experts, first_expert, held, pair_weight,
                          out_cols, K, k, static_cast<const T*>(prefetch), prefetch_bytes);
  };
  if constexpr (sizeof(T) == 2) {
    if (down_prefetch_enabled()) return go(pair_rows_kernel<T, kMats, kRows, kPpt, true>);
  }
  return go(pair_rows_kernel<T, kMats, kRows, kPpt, false>);
}

template <typename T, int kMats>
cudaError_t launch(const void* in, const void* weight, void* out, const int64_t* experts, int64_t first_expert,
                   int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols, int64_t K, int64_t k,
                   const void* prefetch, int64_t prefetch_bytes, cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  if (pairs == 0 || out_cols == 0) return cudaSuccess;
  if (K % V != 0 || pairs > 65535) return cudaErrorInvalidValue;
  const int64_t packs = K / V;
  if (packs <= kMaxThreads)
    return launch_with<T, kMats, 1>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k,
                                     prefetch, prefetch_bytes, s);
  if (packs <= 2 * kMaxThreads)
    return launch_with<T, kMats, 2>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k,
                                     prefetch, prefetch_bytes, s);
  if (packs <= 4 * kMaxThreads)
    return launch_with<T, kMats, 4>(in, weight, out, experts, first_expert, held, pair_weight, pairs, out_cols, K, k,
                                     prefetch, prefetch_bytes, s);
  return cudaErrorInvalidValue;
}

template <int kMats>
cudaError_t launch_dtype(Dtype dtype, const void* in, const void* weight, void* out, const int64_t* experts,
                         int64_t first_expert, int64_t held, const float* pair_weight, int64_t pairs, int64_t out_cols,
                         int64_t K, int64_t k, const void* prefetch, int64_t prefetch_bytes, cudaStream_t s) {
  return with_element_type(dtype, [&](auto e) {
    return launch<typename decltype(e)::type, kMats>(in, weight, out, experts, first_expert, held, pair_weight, pairs,
                                                     out_cols, K, k, prefetch, prefetch_bytes, s);
  });
}

}  // namespace

bool down_prefetch_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LB_DOWN_PREFETCH");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

cudaError_t moe_pair_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* experts,
                             int64_t first_expert, int64_t held, const float* pair_weight, void* act, int64_t pairs,
                             int64_t inter, int64_t hidden, int64_t k, const void* down, cudaStream_t stream) {
  // Only what L2 holds beside the streaming gate/up rows (Qwen3 at one token: 8 x 3 MB of 50 MB).
  const int64_t element = dtype == Dtype::F32 ? 4 : 2, bytes = hidden * inter * element;
  const void* prefetch = pairs * bytes <= kPrefetchMaxBytes ? down : nullptr;
  return launch_dtype<2>(dtype, x, gate_up, act, experts, first_expert, held, pair_weight, pairs, inter, hidden, k,
                         prefetch, bytes, stream);
}

cudaError_t moe_pair_down(Dtype dtype, const void* act, const void* down, const int64_t* experts, int64_t first_expert,
                          int64_t held, void* y, int64_t pairs, int64_t hidden, int64_t inter, cudaStream_t stream) {
  return launch_dtype<1>(dtype, act, down, y, experts, first_expert, held, nullptr, pairs, hidden, inter, 1, nullptr, 0,
                         stream);
}

bool moe_pair_rows_fit(Dtype dtype, int64_t hidden, int64_t inter) {
  const int64_t v = dtype == Dtype::F32 ? 4 : 8;
  return hidden % v == 0 && inter % v == 0 && hidden / v <= 4 * kMaxThreads && inter / v <= 4 * kMaxThreads;
}

}  // namespace lb::cuda
