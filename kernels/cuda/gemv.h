#pragma once
// The launcher of the matrix-vector kernel (kernels/cuda/gemv.cu) behind linear_fused
// (kernels/small_linear.h): y [m, n] = x [m, k] . w [n, k]^T for a few rows m, in fp32, rounded to
// the dtype. A decode step at batch 1 is made of such products, where cuBLAS read the weights at
// 1.5-2.3 TB/s (H200, Qwen3's q/k/v and o projections).
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// The most rows of x one call takes; more take cuBLAS.
constexpr int64_t kGemvMaxRows = 4;

// x, w, y contiguous and 16-byte aligned, k a multiple of 8; 16-bit dtypes only. A chained launch
// (chained_launch.cuh) that reads its first weights before waiting for the kernel before it: w must
// not be written by a kernel still running on the stream (model weights never are). y_f32: y is
// fp32, holding each value rounded to the dtype (torch::linear's output copied to fp32), in one
// kernel instead of a product and a copy.
cudaError_t gemv(Dtype dtype, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
                 cudaStream_t stream, bool y_f32 = false);

// Whether rows of width k take the streaming kernel, which keeps every SM's loads in flight from
// its first weights to its last (the other kernel splits long rows over several warps).
bool gemv_streams(int64_t k);

}  // namespace lb::cuda
