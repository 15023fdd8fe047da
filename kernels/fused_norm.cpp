#include "kernels/fused_norm.h"

#include "kernels/rmsnorm.h"

#include <stdexcept>
#include <string>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/norm_rope.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lb {

namespace {

#ifdef LB_HAVE_CUDA
bool kernel_dtype(torch::ScalarType t, cuda::Dtype* out) {
  switch (t) {
    case torch::kFloat32: *out = cuda::Dtype::F32; return true;
    case torch::kBFloat16: *out = cuda::Dtype::BF16; return true;
    case torch::kHalf: *out = cuda::Dtype::F16; return true;
    default: return false;
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

cudaStream_t stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
#endif

// Whether the CUDA kernels take these tensors (all on one GPU, one supported dtype).
bool on_gpu(const torch::Tensor& x, const torch::Tensor& w) {
#ifdef LB_HAVE_CUDA
  cuda::Dtype d;
  return x.is_cuda() && w.is_cuda() && x.scalar_type() == w.scalar_type() && kernel_dtype(x.scalar_type(), &d);
#else
  (void)x, (void)w;
  return false;
#endif
}

}  // namespace

torch::Tensor rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (!on_gpu(x, weight)) return rmsnorm(x, weight, eps);
#ifdef LB_HAVE_CUDA
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor xc = x.contiguous(), wc = weight.contiguous();
  torch::Tensor y = torch::empty_like(xc);
  cuda::Dtype d;
  kernel_dtype(x.scalar_type(), &d);
  const int64_t cols = x.size(-1);
  check(cuda::rmsnorm(d, xc.data_ptr(), nullptr, wc.data_ptr(), nullptr, y.data_ptr(), xc.numel() / std::max<int64_t>(cols, 1),
                      cols, float(eps), stream_of(x)),
        "rmsnorm kernel");
  return y;
#endif
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& residual,
                                                          const torch::Tensor& weight, double eps) {
  if (!on_gpu(x, weight) || residual.scalar_type() != x.scalar_type() || !residual.is_cuda()) {
    torch::Tensor h = x + residual;
    return {h, rmsnorm(h, weight, eps)};
  }
#ifdef LB_HAVE_CUDA
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor xc = x.contiguous(), rc = residual.contiguous(), wc = weight.contiguous();
  torch::Tensor h = torch::empty_like(xc), y = torch::empty_like(xc);
  cuda::Dtype d;
  kernel_dtype(x.scalar_type(), &d);
  const int64_t cols = x.size(-1);
  check(cuda::rmsnorm(d, xc.data_ptr(), rc.data_ptr(), wc.data_ptr(), h.data_ptr(), y.data_ptr(),
                      xc.numel() / std::max<int64_t>(cols, 1), cols, float(eps), stream_of(x)),
        "residual + rmsnorm kernel");
  return {h, y};
#endif
}

torch::Tensor qk_norm_rope_fused(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs, double eps) {
  const int64_t dim = x.size(-1);
  if (!on_gpu(x, weight) || cs.cos.scalar_type() != x.scalar_type() || dim > 1024 || dim % 2)
    return apply_rope(rmsnorm(x, weight, eps), cs, /*interleaved=*/false);
#ifdef LB_HAVE_CUDA
  const c10::cuda::CUDAGuard guard(x.device());
  const torch::Tensor xc = x.contiguous(), wc = weight.contiguous(), c = cs.cos.contiguous(), s = cs.sin.contiguous();
  torch::Tensor y = torch::empty_like(xc);
  cuda::Dtype d;
  kernel_dtype(x.scalar_type(), &d);
  check(cuda::qk_norm_rope(d, xc.data_ptr(), wc.data_ptr(), c.data_ptr(), s.data_ptr(), y.data_ptr(), x.size(0),
                           x.size(1), dim, float(eps), stream_of(x)),
        "q/k norm + rope kernel");
  return y;
#endif
}

}  // namespace lb
