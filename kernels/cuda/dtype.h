#pragma once
// The element types the CUDA kernels take, named without LibTorch so that kernel headers and .cu
// files need none.
namespace lb::cuda {

enum class Dtype { F32, BF16, F16 };

}  // namespace lb::cuda
