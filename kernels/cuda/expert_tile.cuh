#pragma once
// What the tiled expert kernels share about their weight tiles: where a thread's 16-byte piece of a
// tile row comes from (kernels/cuda/moe_stream.cu; kernels/cuda/moe_wgmma.cu loads whole tiles by
// TMA), how many blocks share a tile, where gate/up's epilogue finds its routing weights, and how
// down learns that an expert's gate/up rows are written (both).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lb::cuda {

// Piece c (8 elements) of row r of matrix m of the weight tile from row0 of expert e, in weights
// [experts * mats, out_cols, K]. A row past out_cols reads the last row instead: valid memory, its
// products never stored.
template <typename T>
__device__ inline const T* weight_piece(const T* weight, int64_t e, int mats, int m, int64_t row0, int r, int c,
                                        int64_t out_cols, int64_t K) {
  const int64_t row = row0 + r < out_cols ? row0 + r : out_cols - 1;
  return weight + ((e * mats + m) * out_cols + row) * K + c * 8;
}

// The routing weights of a pass's pairs first .. first + n, into pass_weights[0, count) (0 past
// n), by the block's kThreads threads, before the products. Read in the epilogue instead, each
// output waited on two dependent loads from L2 (the pair's slot, then its weight), one group of
// outputs at a time (results/kernels/pass_weights_ab_0c1a422/). The caller orders these writes
// before the epilogue's reads, and the previous pass's reads before them, with its barriers.
template <int kThreads>
__device__ inline void load_pass_weights(float* pass_weights, const float* pair_weight, const int64_t* order,
                                         int64_t first, int n, int count) {
  for (int p = threadIdx.x; p < count; p += kThreads) pass_weights[p] = p < n ? pair_weight[order[first + p]] : 0.0f;
}

// The per-expert counts that let down start on an expert once gate/up has written its rows, not once
// the whole gate/up kernel has ended: each gate/up block adds the pairs it wrote rows of to
// ready[e] (cleared by the pair sort), and down's blocks of expert e wait until it reaches the
// expert's pairs times gate/up's row tiles. Both are called by every thread of a block.
__device__ inline void count_expert_rows(int* ready, int rows) {
  __threadfence();  // every thread's rows, before the count that lets down read them
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(ready, rows);
}

__device__ inline void wait_for_expert_rows(const int* ready, int target) {
  if (threadIdx.x == 0) {
    int seen;
    do {
      asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(seen) : "l"(ready) : "memory");
      if (seen < target) __nanosleep(128);
    } while (seen < target);
  }
  __syncthreads();
}

// Blocks per row tile, each taking every passes-th group of kN pairs (launched side by side, so
// the later reads of the tile mostly come from L2): enough that an expert with a quarter more
// pairs than the average is done in one round.
inline int passes_for(double average, int kN) { return std::max(1, int(std::ceil(1.25 * average / kN))); }

}  // namespace lb::cuda
