#pragma once
// What the LibTorch wrappers of our CUDA kernels share: the kernel dtype of a tensor, the current
// stream, and a checked launch. Included only where LB_HAVE_CUDA is set.
#include "kernels/cuda/dtype.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace lb {

// The kernels' dtype for a CUDA tensor of a supported dtype, else none (the caller falls back).
inline std::optional<cuda::Dtype> kernel_dtype(const torch::Tensor& x) {
  if (!x.is_cuda()) return std::nullopt;
  switch (x.scalar_type()) {
    case torch::kFloat32: return cuda::Dtype::F32;
    case torch::kBFloat16: return cuda::Dtype::BF16;
    case torch::kHalf: return cuda::Dtype::F16;
    default: return std::nullopt;
  }
}

// The kernels load and store 16 bytes at a time.
inline bool aligned16(const torch::Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0; }

inline void check_launch(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline cudaStream_t stream_of(const torch::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

}  // namespace lb
