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

// The kernel's inputs: x's few rows in a 16-bit dtype on a GPU, the weight beside it, aligned.
bool gemv_takes(const torch::Tensor& x, const torch::Tensor& weight) {
  const auto dtype = kernel_dtype(x);
  return dtype && *dtype != cuda::Dtype::F32 && x.dim() == 2 && x.size(0) <= cuda::kGemvMaxRows &&
         weight.dim() == 2 && weight.size(1) == x.size(1) && x.size(1) % 8 == 0 && weight.device() == x.device() &&
         weight.scalar_type() == x.scalar_type() && weight.is_contiguous() && aligned16(weight) &&
         (!x.is_contiguous() || aligned16(x));
}

// x . weight^T by the kernel, for inputs gemv_takes: y in x's dtype, or in fp32 holding the same values.
torch::Tensor gemv_product(const torch::Tensor& x, const torch::Tensor& weight, bool y_f32) {
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor xc = x.contiguous();
  torch::Tensor y = torch::empty({x.size(0), weight.size(0)}, y_f32 ? x.options().dtype(torch::kFloat32) : x.options());
  check_launch(cuda::gemv(*kernel_dtype(x), xc.data_ptr(), weight.data_ptr(), y.data_ptr(), x.size(0), weight.size(0),
                          x.size(1), stream_of(x), y_f32),
               "matrix-vector kernel");
  return y;
}
}  // namespace
#endif

bool linear_fused_uses_kernel(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef LB_HAVE_CUDA
  return gemv_takes(x, weight) && weight.numel() * weight.element_size() <= kGemvMaxWeightBytes;
#else
  (void)x, (void)weight;
  return false;
#endif
}

torch::Tensor linear_fused(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef LB_HAVE_CUDA
  if (linear_fused_uses_kernel(x, weight)) return gemv_product(x, weight, /*y_f32=*/false);
#endif
  return torch::linear(x, weight);
}

torch::Tensor linear_to_f32(const torch::Tensor& x, const torch::Tensor& weight, bool fused) {
#ifdef LB_HAVE_CUDA
  // Qwen3's batch-1 step on an H200: ~0.41 ms against ~0.42 with cuBLAS's product and the copy
  // (results/decode/bench_decode_qwen3-30b-a3b_4L_1gpu_bf16_fused_headpair-*_e236227.json).
  if (fused && gemv_takes(x, weight) &&
      (cuda::gemv_streams(x.size(1)) || weight.numel() * weight.element_size() <= kGemvMaxWeightBytes))
    return gemv_product(x, weight, /*y_f32=*/true);
#endif
  // Inputs the kernel does not take would not take it through linear_fused either.
  return torch::linear(x, weight).to(torch::kFloat32);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, bool fused) {
  return fused ? linear_fused(x, weight) : torch::linear(x, weight);
}

}  // namespace lb
