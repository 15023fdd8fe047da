#include "kernels/cuda/moe_slots.h"

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

constexpr int kThreads = 256;

// Each output element is written once, by the thread of its index: GEMM row s finds its pair from
// the expert run it falls in (no scatter into zeros, so no ordering between fills and writes), and
// pair position i writes the GEMM row of pair order[i].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gemm_slots_kernel(const int64_t* order, const int64_t* expert, const int64_t* offsets, const T* weights,
                      int64_t pairs, int64_t rows, int64_t k, bool padded, int64_t most, int64_t slots,
                      int64_t* slot_token, float* slot_weight, int64_t* row_of_pair) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < slots; s += stride) {
    int64_t at = s;  // the sorted position of the pair in GEMM row s, or -1 for padding
    if (padded) {
      const int64_t e = s / most, r = s % most;
      at = offsets[e] + r < offsets[e + 1] ? offsets[e] + r : -1;
    }
    slot_token[s] = at < 0 ? 0 : order[at] / k;
    slot_weight[s] = at < 0 ? 0.0f : to_f(weights[order[at]]);
  }
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs; i += stride) {
    int64_t row = -1;
    if (i < rows) row = padded ? expert[i] * most + i - offsets[expert[i]] : i;
    row_of_pair[order[i]] = row;
  }
}

}  // namespace

cudaError_t moe_gemm_slots(Dtype dtype, const int64_t* order, const int64_t* expert, const int64_t* offsets,
                           const void* weights, int64_t pairs, int64_t rows, int64_t k, bool padded, int64_t most,
                           int64_t slots, int64_t* slot_token, float* slot_weight, int64_t* row_of_pair,
                           cudaStream_t stream) {
  if (pairs < 0 || rows < 0 || rows > pairs || k < 1 || slots < 0 || (padded && most < 1)) return cudaErrorInvalidValue;
  const int64_t work = slots > pairs ? slots : pairs;
  if (work == 0) return cudaSuccess;
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  const unsigned grid = unsigned(blocks < 4096 ? blocks : 4096);
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    gemm_slots_kernel<T><<<grid, kThreads, 0, stream>>>(order, expert, offsets, static_cast<const T*>(weights), pairs,
                                                        rows, k, padded, most, slots, slot_token, slot_weight,
                                                        row_of_pair);
    return cudaGetLastError();
  });
}

}  // namespace lb::cuda
