#include "kernels/cuda/rope_table.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per (token, column). The same fp32 operations in the same order as the LibTorch ops
// (cosf and sinf are the functions LibTorch's kernels call), so the table has the same bits.
template <typename T>
__global__ void __launch_bounds__(kThreads) rope_table_kernel(const int64_t* positions, const float* inv_freq,
                                                              int64_t tokens, int64_t half, float factor, T* cos,
                                                              T* sin) {
  allow_next_kernel();
  wait_for_previous_kernel();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, dim = 2 * half;
  if (i >= tokens * dim) return;
  const float angle = float(positions[i / dim]) * inv_freq[i % dim % half];
  cos[i] = from_f<T>(cosf(angle) * factor);
  sin[i] = from_f<T>(sinf(angle) * factor);
}

}  // namespace

cudaError_t rope_table(Dtype dtype, const int64_t* positions, const float* inv_freq, int64_t tokens, int64_t half,
                       float factor, void* cos, void* sin, cudaStream_t stream) {
  if (tokens < 0 || half <= 0) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = (tokens * 2 * half + kThreads - 1) / kThreads;
  if (blocks > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    return launch_chained(rope_table_kernel<T>, dim3(unsigned(blocks)), dim3(kThreads), 0, stream, positions, inv_freq,
                          tokens, half, factor, static_cast<T*>(cos), static_cast<T*>(sin));
  });
}

}  // namespace lb::cuda
