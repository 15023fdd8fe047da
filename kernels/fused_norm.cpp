#include "kernels/fused_norm.h"

#include "kernels/rmsnorm.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/norm_rope.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

#ifdef LB_HAVE_CUDA
namespace {

// The kernels' dtype when they take these tensors (on one GPU, one supported dtype), else none.
std::optional<cuda::Dtype> norm_dtype(const torch::Tensor& x, const torch::Tensor& w) {
  if (!w.is_cuda() || x.scalar_type() != w.scalar_type()) return std::nullopt;
  return kernel_dtype(x);
}

int64_t rows_of(const torch::Tensor& x) { return x.numel() / std::max<int64_t>(x.size(-1), 1); }

}  // namespace
#endif

torch::Tensor rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
#ifdef LB_HAVE_CUDA
  if (const auto d = norm_dtype(x, weight)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const torch::Tensor xc = x.contiguous(), wc = weight.contiguous();
    torch::Tensor y = torch::empty_like(xc);
    check_launch(cuda::rmsnorm(*d, xc.data_ptr(), nullptr, wc.data_ptr(), nullptr, y.data_ptr(), rows_of(xc),
                               x.size(-1), float(eps), stream_of(x)),
                 "rmsnorm kernel");
    return y;
  }
#endif
  return rmsnorm(x, weight, eps);
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& residual,
                                                          const torch::Tensor& weight, double eps) {
#ifdef LB_HAVE_CUDA
  const auto d = norm_dtype(x, weight);
  if (d && residual.is_cuda() && residual.scalar_type() == x.scalar_type()) {
    const c10::cuda::CUDAGuard guard(x.device());
    const torch::Tensor xc = x.contiguous(), rc = residual.contiguous(), wc = weight.contiguous();
    torch::Tensor h = torch::empty_like(xc), y = torch::empty_like(xc);
    check_launch(cuda::rmsnorm(*d, xc.data_ptr(), rc.data_ptr(), wc.data_ptr(), h.data_ptr(), y.data_ptr(),
                               rows_of(xc), x.size(-1), float(eps), stream_of(x)),
                 "residual + rmsnorm kernel");
    return {h, y};
  }
#endif
  torch::Tensor h = x + residual;
  return {h, rmsnorm(h, weight, eps)};
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& residual,
                                                    const torch::Tensor& weight, double eps, bool fused) {
  if (fused) return add_rmsnorm_fused(x, residual, weight, eps);
  torch::Tensor h = x + residual;
  return {h, rmsnorm(h, weight, eps)};
}

torch::Tensor qk_norm_rope_fused(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs, double eps) {
#ifdef LB_HAVE_CUDA
  const int64_t dim = x.size(-1);
  const auto d = norm_dtype(x, weight);
  if (d && cs.cos.scalar_type() == x.scalar_type() && dim <= 1024 && dim % 2 == 0) {
    const c10::cuda::CUDAGuard guard(x.device());
    // Heads of a token packed, tokens at any stride (q and k are column blocks of one qkv product).
    const bool strided = x.dim() == 3 && x.stride(2) == 1 && x.stride(1) == dim;
    const torch::Tensor xc = strided ? x : x.contiguous(), wc = weight.contiguous(), c = cs.cos.contiguous(),
                        s = cs.sin.contiguous();
    torch::Tensor y = torch::empty(xc.sizes(), xc.options());
    check_launch(cuda::qk_norm_rope(*d, xc.data_ptr(), xc.dim() == 3 ? xc.stride(0) : x.size(1) * dim, wc.data_ptr(),
                                    c.data_ptr(), s.data_ptr(), y.data_ptr(), x.size(0), x.size(1), dim, float(eps),
                                    stream_of(x)),
                 "q/k norm + rope kernel");
    return y;
  }
#endif
  return apply_rope(rmsnorm(x, weight, eps), cs, /*interleaved=*/false);
}

}  // namespace lb
