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
  return add_rmsnorm(x, residual, weight, eps, /*fused=*/false);
}

std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& residual,
                                                    const torch::Tensor& weight, double eps, bool fused) {
  if (fused) return add_rmsnorm_fused(x, residual, weight, eps);
  torch::Tensor h = x + residual;
  return {h, rmsnorm(h, weight, eps)};
}

#ifdef LB_HAVE_CUDA
namespace {

// One set of heads as the q/k norm + RoPE kernel takes it: the input read in place when its heads
// are packed (tokens at any stride: q and k are column blocks of one qkv product) and the weight.
// The packed output is made only once the launch is sure.
struct QkOperands {
  cuda::Dtype dtype;
  torch::Tensor x, w;
  torch::Tensor output() const { return torch::empty(x.sizes(), x.options()); }
  cuda::QkHeads heads(const torch::Tensor& y) const {
    return {x.data_ptr(), x.stride(0), w.data_ptr(), y.data_ptr(), x.size(1)};
  }
};

// The operands when the kernel takes x [T, heads, dim] with this weight and cos/sin, else none.
std::optional<QkOperands> qk_operands(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs) {
  const auto d = norm_dtype(x, weight);
  if (!d || x.dim() != 3 || cs.cos.scalar_type() != x.scalar_type() || x.size(2) > 1024 || x.size(2) % 2 != 0)
    return std::nullopt;
  const bool packed_heads = x.stride(2) == 1 && x.stride(1) == x.size(2);
  return QkOperands{*d, packed_heads ? x : x.contiguous(), weight.contiguous()};
}

}  // namespace
#endif

torch::Tensor qk_norm_rope_fused(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs, double eps) {
#ifdef LB_HAVE_CUDA
  if (const auto a = qk_operands(x, weight, cs)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const torch::Tensor c = cs.cos.contiguous(), s = cs.sin.contiguous();
    const torch::Tensor y = a->output();
    const cuda::QkHeads h = a->heads(y);
    check_launch(cuda::qk_norm_rope(a->dtype, h.x, h.x_stride, h.w, c.data_ptr(), s.data_ptr(), h.y, x.size(0), h.heads,
                                    x.size(2), float(eps), stream_of(x)),
                 "q/k norm + rope kernel");
    return y;
  }
#endif
  return apply_rope(rmsnorm(x, weight, eps), cs, /*interleaved=*/false);
}

std::pair<torch::Tensor, torch::Tensor> qk_norm_rope_pair_fused(const torch::Tensor& q, const torch::Tensor& q_weight,
                                                                const torch::Tensor& k, const torch::Tensor& k_weight,
                                                                const CosSin& cs, double eps) {
#ifdef LB_HAVE_CUDA
  const auto a = qk_operands(q, q_weight, cs), b = qk_operands(k, k_weight, cs);
  if (a && b && q.device() == k.device() && q.scalar_type() == k.scalar_type() && q.size(0) == k.size(0) &&
      q.size(2) == k.size(2)) {
    const c10::cuda::CUDAGuard guard(q.device());
    const torch::Tensor c = cs.cos.contiguous(), s = cs.sin.contiguous();
    const torch::Tensor qy = a->output(), ky = b->output();
    check_launch(cuda::qk_norm_rope_pair(a->dtype, a->heads(qy), b->heads(ky), c.data_ptr(), s.data_ptr(), q.size(0),
                                         q.size(2), float(eps), stream_of(q)),
                 "q and k norm + rope kernel");
    return {qy, ky};
  }
#endif
  return {qk_norm_rope_fused(q, q_weight, cs, eps), qk_norm_rope_fused(k, k_weight, cs, eps)};
}

std::pair<torch::Tensor, torch::Tensor> qk_norm_rope_pair_fused(const torch::Tensor& q, const torch::Tensor& q_weight,
                                                                const torch::Tensor& k, const torch::Tensor& k_weight,
                                                                const CosSin& cs, double eps, const KvRowsOut& cache,
                                                                bool* written) {
  *written = false;
#ifdef LB_HAVE_CUDA
  const auto a = qk_operands(q, q_weight, cs), b = qk_operands(k, k_weight, cs);
  const torch::Tensor& nv = cache.new_values;
  const int64_t tokens = q.size(0), width = k.size(1) * k.size(2);
  const auto same = [&](const torch::Tensor& t) {
    return t.defined() && t.device() == q.device() && t.scalar_type() == q.scalar_type();
  };
  if (a && b && q.device() == k.device() && q.scalar_type() == k.scalar_type() && k.size(0) == tokens &&
      q.size(2) == k.size(2) && cuda::qk_norm_rope_to_cache_fits(q.size(2)) && same(cache.keys) &&
      same(cache.values) && cache.keys.dim() == 2 && cache.keys.is_contiguous() && cache.keys.size(1) == width &&
      cache.values.sizes() == cache.keys.sizes() && cache.values.is_contiguous() && same(nv) && nv.dim() == 3 &&
      nv.size(0) == tokens && nv.size(1) * nv.size(2) == width && nv.stride(2) == 1 && nv.stride(1) == nv.size(2) &&
      cache.at.defined() && cache.at.device() == q.device() && cache.at.scalar_type() == torch::kInt64 &&
      cache.at.dim() == 1 && cache.at.size(0) == tokens) {
    const c10::cuda::CUDAGuard guard(q.device());
    const torch::Tensor c = cs.cos.contiguous(), s = cs.sin.contiguous(), at = cache.at.contiguous();
    const torch::Tensor qy = a->output(), ky = b->output();
    const cuda::QkCacheRows rows{cache.keys.data_ptr(), cache.values.data_ptr(), nv.data_ptr(), nv.stride(0),
                                 at.data_ptr<int64_t>(), cache.keys.size(0)};
    check_launch(cuda::qk_norm_rope_pair_to_cache(a->dtype, a->heads(qy), b->heads(ky), c.data_ptr(), s.data_ptr(), rows,
                                                  tokens, q.size(2), float(eps), stream_of(q)),
                 "q and k norm + rope kernel with the cache write");
    *written = true;
    return {qy, ky};
  }
#endif
  return qk_norm_rope_pair_fused(q, q_weight, k, k_weight, cs, eps);
}

}  // namespace lb
