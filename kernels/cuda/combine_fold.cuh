#pragma once
// The down kernels' side of kernels/cuda/combine_fold.h.
#include "kernels/cuda/combine_fold.h"
#include "kernels/cuda/convert.cuh"

#include <cuda_runtime.h>

namespace lb::cuda {

// Pairs a block may write in one pass (the warpgroup kernels' largest passes).
constexpr int kMaxFoldPairs = 128;

// Called by every thread of a down block after its stores of sorted rows [first, first + n) of y
// at columns [col0, col0 + cols) (column tile blockIdx.y; cols a multiple of 8): counts those rows
// for their tokens, and the tokens whose last row this was get their sum in f.out.
template <typename T>
__device__ inline void fold_combine(const CombineFold& f, const T* y, int64_t first, int n, int64_t col0, int cols) {
  __shared__ int last_count;
  __shared__ int64_t last_tokens[kMaxFoldPairs];
  __threadfence();  // this thread's rows reach the device before the block counts them
  if (threadIdx.x == 0) last_count = 0;
  __syncthreads();
  for (int p = threadIdx.x; p < n; p += blockDim.x) {
    const int64_t token = f.order[first + p] / f.k;
    int here = 0;  // the token's pairs held here: the rows that will arrive
    for (int64_t s = 0; s < f.k; ++s) here += f.row_of_pair[token * f.k + s] >= 0;
    if (atomicAdd(&f.arrivals[token * f.tiles + blockIdx.y], 1) == here - 1) {
      __threadfence();  // the other blocks' rows of this token, before they are read
      last_tokens[atomicAdd(&last_count, 1)] = token;
    }
  }
  __syncthreads();
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  T* out = static_cast<T*>(f.out);
  for (int i = warp; i < last_count; i += warps) {
    const int64_t token = last_tokens[i];
    for (int c = lane * 8; c < cols; c += 32 * 8) {
      float acc[8] = {};
      for (int64_t s = 0; s < f.k; ++s) {
        const int64_t row = f.row_of_pair[token * f.k + s];
        if (row < 0) continue;
        // From L2: rows written by other blocks are not in this SM's L1.
        const uint4 bits = __ldcg(reinterpret_cast<const uint4*>(y + row * f.hidden + col0 + c));
        Pack<T, 8> v;
        memcpy(&v, &bits, sizeof v);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += to_f(v.v[j]);
      }
      Pack<T, 8> o;
#pragma unroll
      for (int j = 0; j < 8; ++j) o.v[j] = from_f<T>(acc[j]);
      store_pack<T, 8>(out + token * f.hidden + col0 + c, o);
    }
  }
  __syncthreads();  // last_tokens and last_count serve the next pass
}

}  // namespace lb::cuda
