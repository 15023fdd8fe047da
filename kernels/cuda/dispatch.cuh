#pragma once
// The one place a runtime Dtype becomes the element type a kernel template is instantiated with.
#include "kernels/cuda/dtype.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace lb::cuda {

template <typename T> struct Element {
  using type = T;
};

// Returns launch(Element<T>{}) for the element type T that `dtype` names, so a launcher reads
//   return with_element_type(dtype, [&](auto e) { return launch<typename decltype(e)::type>(...); });
template <typename Launch> cudaError_t with_element_type(Dtype dtype, Launch&& launch) {
  switch (dtype) {
    case Dtype::F32: return launch(Element<float>{});
    case Dtype::BF16: return launch(Element<__nv_bfloat16>{});
    case Dtype::F16: return launch(Element<__half>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace lb::cuda
