#include "kernels/cuda/moe_decode.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

#include <climits>

namespace lb::cuda {

namespace {

constexpr int kWarps = 4;  // warps per block
constexpr int kRows = 4;   // output rows per warp: each input value loaded serves kRows weight rows
// Pairs accumulated against one pass over the weight rows: 8 for down, 4 for gate and up, so that
// the accumulators stay in registers with enough warps resident to keep loads in flight.
constexpr int kChunkRows = 8;

// A stable counting sort of the pairs by local expert (pair order within an expert is pair id
// order); pairs of experts held elsewhere get key `held` and go last. Block e (one a key) reads every
// key into shared memory, counts the keys below e (its first position) and each warp's pairs of key
// e over a contiguous segment by warp votes, then places its pairs in order. No atomics, no
// shared-memory histogram: the one-block sort that walked the pairs with __match_any_sync took 38 us
// for 8192 pairs on an H200 at 8 warps and 24 us at 32 (Qwen3 1024 tokens, Nsight Compute at
// 584c785), a tenth of the experts' time; this one took 18 us with 8 warps and one load in flight
// a thread (81c506b), 7 us with 32 warps and eight (07b4adc).
constexpr int kSortWarps = 32;
constexpr int kLoadBatch = 8;

// The keys sit in dynamic shared memory sized by the launch: a byte each where the keys fit one
// (up to 255 experts held, Qwen3's 128 included), so that a block holds kMaxSortPairs of them.
template <typename Key>
__global__ void __launch_bounds__(kSortWarps * 32)
    sort_pairs_kernel(const int64_t* experts, int64_t pairs, int64_t first_expert, int64_t held, int64_t* order,
                      int64_t* offsets, int64_t* row_of_pair, int* ready) {
  allow_next_kernel();
  wait_for_previous_kernel();
  extern __shared__ uint8_t key_bytes[];
  Key* keys = reinterpret_cast<Key*>(key_bytes);
  __shared__ int warp_equal[kSortWarps], warp_less[kSortWarps];
  const int e = int(blockIdx.x), warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (ready && e < held && threadIdx.x == 0) ready[e] = 0;
  // kLoadBatch loads in flight a thread: 8192 pairs a round.
  for (int64_t p0 = threadIdx.x; p0 < pairs; p0 += int64_t(blockDim.x) * kLoadBatch) {
    int64_t expert[kLoadBatch];
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int64_t p = p0 + int64_t(u) * blockDim.x;
      expert[u] = p < pairs ? experts[p] : first_expert;
    }
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int64_t p = p0 + int64_t(u) * blockDim.x, local = expert[u] - first_expert;
      if (p < pairs) keys[p] = Key(local >= 0 && local < held ? local : held);
    }
  }
  __syncthreads();
  const int64_t per_warp = (pairs + kSortWarps * 32 - 1) / (kSortWarps * 32) * 32;
  const int64_t lo = min(pairs, warp * per_warp), hi = min(pairs, lo + per_warp);
  int equal = 0, less = 0;  // the same in every lane: counts of votes
  for (int64_t base = lo; base < hi; base += 32) {
    const int key = base + lane < hi ? keys[base + lane] : INT_MAX;
    equal += __popc(__ballot_sync(0xffffffffu, key == e));
    less += __popc(__ballot_sync(0xffffffffu, key < e));
  }
  if (lane == 0) {
    warp_equal[warp] = equal;
    warp_less[warp] = less;
  }
  __syncthreads();
  int position = 0;  // key e's first position, then this warp's next
  for (int w = 0; w < kSortWarps; ++w) position += warp_less[w] + (w < warp ? warp_equal[w] : 0);
  if (threadIdx.x == 0) offsets[e] = position;
  const unsigned lanes_before = (1u << lane) - 1u;
  for (int64_t base = lo; base < hi; base += 32) {
    const int64_t p = base + lane;
    const bool mine = p < hi && keys[p] == e;
    const unsigned votes = __ballot_sync(0xffffffffu, mine);
    if (mine) {
      const int at = position + __popc(votes & lanes_before);
      order[at] = p;
      row_of_pair[p] = e < held ? at : -1;
    }
    position += __popc(votes);
  }
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
        out[(first + p) * out_cols + row0 + r] = from_f<T>(kGateUp ? silu(a) * b * scale : a);
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
                           int64_t* offsets, int64_t* row_of_pair, cudaStream_t stream, int* ready) {
  static_assert(kMaxSortExperts < 65535, "keys (held + 1 of them) fit 16 bits");
  if (held > kMaxSortExperts || pairs > max_sort_pairs(held)) return cudaErrorInvalidValue;
  const auto run = [&](auto key) {
    using Key = decltype(key);
    const auto kernel = sort_pairs_kernel<Key>;
    const size_t key_bytes = size_t(pairs) * sizeof(Key);
    // Past the 48 KB a block has by default (its static counts included) the kernel must opt in:
    // allowed per kernel, and not a stream operation (legal inside a capture). Only there, so that
    // decode-sized sorts add no driver call to the host's side of a step.
    if (key_bytes + 2 * kSortWarps * sizeof(int) > 48 * 1024) {
      const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    int(max_sort_pairs(held) * sizeof(Key)));
      if (attr != cudaSuccess) return attr;
    }
    return launch_chained(kernel, dim3(unsigned(held + 1)), dim3(kSortWarps * 32), key_bytes, stream, experts, pairs,
                          first_expert, held, order, offsets, row_of_pair, ready);
  };
  return sort_keys_fit_a_byte(held) ? run(uint8_t{}) : run(uint16_t{});
}

}  // namespace lb::cuda
