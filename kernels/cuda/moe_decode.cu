#include "kernels/cuda/moe_decode.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;  // warps per block
constexpr int kRows = 4;   // output rows per warp: each input value loaded serves kRows weight rows
// Pairs accumulated against one pass over the weight rows: 8 for down, 4 for gate and up, so that
// the accumulators stay in registers with enough warps resident to keep loads in flight.
constexpr int kChunkRows = 8;

// One block: a stable counting sort of the pairs by local expert (pair order within an expert is
// pair id order); pairs of experts held elsewhere get key `held` and go last. Each warp takes a
// contiguous segment of the pairs and counts its keys, 32 at a time (lanes with the same key found
// by one match), into its own row of counts; the (key, warp) order of those counts gives every
// warp its first position per key, and a second walk places each pair. Nothing is compared pair
// against pair, so 8192 pairs cost about as much as a few hundred.
constexpr int kSortWarps = 8;

// visit(p, key, same, active) on this warp's lanes for pairs lo .. hi - 1, 32 at a time: `same`
// holds the lanes of the round whose pair has the same key, `active` those with a pair.
template <typename KeyOf, typename Visit>
__device__ inline void walk_pairs(int64_t lo, int64_t hi, int lane, const KeyOf& key_of, const Visit& visit) {
  for (int64_t base = lo; base < hi; base += 32) {
    const int64_t p = base + lane;
    const unsigned active = __ballot_sync(0xffffffffu, p < hi);
    if (p < hi) {
      const int key = key_of(p);
      visit(p, key, __match_any_sync(active, key), active);
    }
    __syncwarp();
  }
}

__global__ void __launch_bounds__(kSortWarps * 32)
    sort_pairs_kernel(const int64_t* experts, int64_t pairs, int64_t first_expert, int64_t held, int64_t* order,
                      int64_t* offsets, int64_t* row_of_pair) {
  allow_next_kernel();
  wait_for_previous_kernel();
  extern __shared__ int shared[];
  const int keys = int(held) + 1;
  int* start = shared;                   // [keys]: each key's first position
  int* counts = shared + keys;           // [kSortWarps][keys]: then each warp's next position in a key
  __shared__ int warp_totals[kSortWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < (kSortWarps + 1) * keys; i += blockDim.x) shared[i] = 0;
  __syncthreads();
  const int64_t per_warp = (pairs + kSortWarps - 1) / kSortWarps;
  const int64_t lo = min(pairs, warp * per_warp), hi = min(pairs, lo + per_warp);
  int* mine = counts + warp * keys;
  const auto key_of = [&](int64_t p) {
    const int64_t local = experts[p] - first_expert;
    return int(local >= 0 && local < held ? local : held);
  };
  walk_pairs(lo, hi, lane, key_of, [&](int64_t, int key, unsigned same, unsigned) {  // the warp's counts
    if (lane == __ffs(same) - 1) mine[key] += __popc(same);
  });
  __syncthreads();
  for (int key = threadIdx.x; key < keys; key += blockDim.x) {  // per key: the warps' exclusive sums
    int sum = 0;
    for (int w = 0; w < kSortWarps; ++w) {
      const int c = counts[w * keys + key];
      counts[w * keys + key] = sum;
      sum += c;
    }
    start[key] = sum;
  }
  __syncthreads();
  {  // start: the keys' totals become their exclusive sums; each thread a run of consecutive keys
    const int per_thread = (keys + int(blockDim.x) - 1) / int(blockDim.x), k0 = int(threadIdx.x) * per_thread;
    int own = 0;
    for (int i = k0; i < k0 + per_thread && i < keys; ++i) own += start[i];
    int inclusive = own;
    for (int o = 1; o < 32; o *= 2) {
      const int v = __shfl_up_sync(0xffffffffu, inclusive, o);
      if (lane >= o) inclusive += v;
    }
    if (lane == 31) warp_totals[warp] = inclusive;
    __syncthreads();
    int run = inclusive - own;
    for (int w = 0; w < warp; ++w) run += warp_totals[w];
    for (int i = k0; i < k0 + per_thread && i < keys; ++i) {
      const int total = start[i];
      start[i] = run;
      offsets[i] = run;
      run += total;
    }
  }
  __syncthreads();
  walk_pairs(lo, hi, lane, key_of, [&](int64_t p, int key, unsigned same, unsigned active) {  // the placements
    const int position = start[key] + mine[key] + __popc(same & ((1u << lane) - 1u));
    order[position] = p;
    row_of_pair[p] = key < held ? position : -1;
    __syncwarp(active);  // every lane has read mine[key] before its first lane moves it on
    if (lane == __ffs(same) - 1) mine[key] += __popc(same);
  });
}

// Block (row tile, expert); warp w handles output rows row0 .. row0 + kRows. With kGateUp it
// reads gate rows and the matching up rows and writes act; otherwise down rows and writes y.
// Inputs are token rows of x (kGateUp: pair id / k) or rows of act (the sorted position).
template <typename T, bool kGateUp>
__global__ void decode_kernel(const T* in, const T* weight, const int64_t* order, const int64_t* offsets,
                              const float* pair_weight, T* out, int64_t out_cols, int64_t K, int64_t k) {
  allow_next_kernel();
  wait_for_previous_kernel();
  constexpr int V = 16 / sizeof(T);
  constexpr int kMats = kGateUp ? 2 : 1;
  constexpr int kChunk = kChunkRows / kMats;
  const int64_t e = blockIdx.y, begin = offsets[e], end = offsets[e + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row0 = (int64_t(blockIdx.x) * kWarps + warp) * kRows;
  if (begin == end || row0 >= out_cols) return;
  const int64_t rows_per_expert = kMats * out_cols;
  const T* w[kMats][kRows];
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = row0 + r < out_cols ? row0 + r : row0;  // past the end: recompute row0, never stored
      w[m][r] = weight + (e * rows_per_expert + m * out_cols + row) * K;
    }
  for (int64_t first = begin; first < end; first += kChunk) {
    const int n = int(end - first < kChunk ? end - first : kChunk);
    const T* x[kChunk];
#pragma unroll
    for (int p = 0; p < kChunk; ++p) {
      const int64_t i = first + (p < n ? p : 0);
      x[p] = in + (kGateUp ? order[i] / k : i) * K;
    }
    float acc[kChunk][kMats][kRows] = {};
    for (int64_t c = int64_t(lane) * V; c < K; c += 32 * V) {
      Pack<T, V> wp[kMats][kRows];
#pragma unroll
      for (int m = 0; m < kMats; ++m)
#pragma unroll
        for (int r = 0; r < kRows; ++r) wp[m][r] = load_pack<T, V>(w[m][r] + c);
#pragma unroll
      for (int p = 0; p < kChunk; ++p) {
        if (p >= n) break;
        dot_packs(acc[p], wp, load_pack<T, V>(x[p] + c));
      }
    }
#pragma unroll
    for (int p = 0; p < kChunk; ++p) {
      if (p >= n) break;  // n is the same across the warp: the shuffles stay converged
      const float scale = kGateUp ? pair_weight[order[first + p]] : 1.0f;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float a = warp_sum(acc[p][0][r]);
        const float b = kGateUp ? warp_sum(acc[p][kMats - 1][r]) : 0.0f;
        if (lane != (p * kRows + r) % 32 || row0 + r >= out_cols) continue;
        out[(first + p) * out_cols + row0 + r] = from_f<T>(kGateUp ? a / (1.0f + __expf(-a)) * b * scale : a);
      }
    }
  }
}

template <typename T, bool kGateUp>
cudaError_t launch(const void* in, const void* weight, const int64_t* order, const int64_t* offsets,
                   const float* pair_weight, void* out, int64_t experts, int64_t out_cols, int64_t K, int64_t k,
                   cudaStream_t s) {
  if (experts == 0 || out_cols == 0) return cudaSuccess;
  if (K % (16 / sizeof(T)) != 0 || experts > 65535) return cudaErrorInvalidValue;
  const dim3 grid(unsigned((out_cols + kWarps * kRows - 1) / (kWarps * kRows)), unsigned(experts));
  return launch_chained(decode_kernel<T, kGateUp>, grid, dim3(kWarps * 32), 0, s, static_cast<const T*>(in),
                        static_cast<const T*>(weight), order, offsets, pair_weight, static_cast<T*>(out), out_cols, K,
                        k);
}

}  // namespace

cudaError_t moe_decode_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                               const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                               int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream) {
  return with_element_type(dtype, [&](auto e) {
    return launch<typename decltype(e)::type, true>(x, gate_up, order, offsets, pair_weight, act, experts, inter,
                                                    hidden, k, stream);
  });
}

cudaError_t moe_decode_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                            int64_t experts, int64_t hidden, int64_t inter, cudaStream_t stream) {
  return with_element_type(dtype, [&](auto e) {
    return launch<typename decltype(e)::type, false>(act, down, nullptr, offsets, nullptr, y, experts, hidden, inter, 1,
                                                     stream);
  });
}

int moe_decode_alignment(Dtype dtype) { return dtype == Dtype::F32 ? 4 : 8; }

cudaError_t moe_sort_pairs(const int64_t* experts, int64_t pairs, int64_t first_expert, int64_t held, int64_t* order,
                           int64_t* offsets, int64_t* row_of_pair, cudaStream_t stream) {
  if (pairs > kMaxSortPairs || held > kMaxSortExperts) return cudaErrorInvalidValue;
  const size_t shared = size_t(kSortWarps + 1) * size_t(held + 1) * sizeof(int);
  return launch_chained(sort_pairs_kernel, dim3(1), dim3(kSortWarps * 32), shared, stream, experts, pairs, first_expert,
                        held, order, offsets, row_of_pair);
}

}  // namespace lb::cuda
