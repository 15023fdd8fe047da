#include "kernels/small_linear.h"

#include <cstdint>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/gemv.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

#ifdef LB_HAVE_CUDA
namespace {
// Larger weights stay with cuBLAS: on an H200 its kernels read DeepSeek-V3's 75-264 MB projections at
// ~3.7 TB/s against the kernel's ~2.9, while on Qwen3's 0.5-21 MB ones the kernel is the faster.
constexpr int64_t kGemvMaxWeightBytes = int64_t(32) << 20;
}  // namespace
#endif

bool linear_fused_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef LB_HAVE_CUDA
  const auto dtype = kernel_dtype(x);
  return dtype && *dtype != cuda::Dtype::F32 && x.dim() == 2 && x.size(0) <= cuda::kGemvMaxRows &&
         weight.numel() * weight.element_size() <= kGemvMaxWeightBytes &&
         weight.dim() == 2 && weight.size(1) == x.size(1) && x.size(1) % 8 == 0 && weight.device() == x.device() &&
         weight.scalar_type() == x.scalar_type() && weight.is_contiguous() && aligned16(weight) &&
         (!x.is_contiguous() || aligned16(x));
#else
  (void)x, (void)weight;
  return false;
#endif
}

torch::Tensor linear_fused(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef LB_HAVE_CUDA
  if (linear_fused_uses_kernel(x, weight)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const torch::Tensor xc = x.contiguous();
    torch::Tensor y = torch::empty({x.size(0), weight.size(0)}, x.options());
    check_launch(cuda::gemv(*kernel_dtype(x), xc.data_ptr(), weight.data_ptr(), y.data_ptr(), x.size(0),
                            weight.size(0), x.size(1), stream_of(x)),
                 "matrix-vector kernel");
    return y;
  }
#endif
  return torch::linear(x, weight);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, bool fused) {
  return fused ? linear_fused(x, weight) : torch::linear(x, weight);
}

}  // namespace lb
