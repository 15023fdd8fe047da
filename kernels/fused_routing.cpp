#include "kernels/fused_routing.h"

#include "kernels/small_linear.h"

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/moe_routing.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

#ifdef LB_HAVE_CUDA
namespace {

struct RoutingOut {
  torch::Tensor experts, weights;
};

RoutingOut routing_outputs(const torch::Tensor& logits, int64_t k) {
  const auto o = logits.options();
  return {torch::empty({logits.size(0), k}, o.dtype(torch::kInt64)), torch::empty({logits.size(0), k}, o.dtype(torch::kFloat32))};
}

// A 2-D CUDA tensor of a dtype the kernels take; the sizes are checked by the kernels' own rules.
bool kernel_takes(const torch::Tensor& logits) { return kernel_dtype(logits) && logits.dim() == 2; }

}  // namespace
#endif

Routing fused_route_softmax_topk(const torch::Tensor& logits, int64_t k, bool renormalize) {
#ifdef LB_HAVE_CUDA
  if (kernel_takes(logits) && cuda::softmax_topk_fits(logits.size(1), k)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    const torch::Tensor lc = logits.contiguous();
    RoutingOut r = routing_outputs(lc, k);
    check_launch(cuda::route_softmax_topk(*kernel_dtype(lc), lc.data_ptr(), lc.size(0), lc.size(1), k, renormalize,
                                          r.experts.data_ptr<int64_t>(), r.weights.data_ptr<float>(), stream_of(lc)),
                 "softmax top-k routing kernel");
    return {r.experts, r.weights};
  }
#endif
  return route_softmax_topk(logits, k, renormalize);
}

Routing fused_router_softmax_topk(const torch::Tensor& x, const torch::Tensor& gate, int64_t k, bool renormalize) {
#ifdef LB_HAVE_CUDA
  const auto d = kernel_dtype(x);
  if (d && x.dim() == 2 && gate.dim() == 2 && gate.size(1) == x.size(1) && gate.device() == x.device() &&
      gate.scalar_type() == x.scalar_type() && gate.is_contiguous() && aligned16(gate) &&
      cuda::router_topk_fits(*d, x.size(0), gate.size(0), x.size(1), k)) {
    const c10::cuda::CUDAGuard guard(x.device());
    const torch::Tensor xc = x.contiguous();
    if (aligned16(xc)) {
      torch::Tensor logits = torch::empty({x.size(0), gate.size(0)}, x.options());
      RoutingOut r = routing_outputs(logits, k);
      check_launch(cuda::router_softmax_topk(*d, xc.data_ptr(), gate.data_ptr(), x.size(0), gate.size(0), x.size(1), k,
                                             renormalize, logits.data_ptr(), r.experts.data_ptr<int64_t>(),
                                             r.weights.data_ptr<float>(), stream_of(xc)),
                   "router and softmax top-k kernel");
      return {r.experts, r.weights, logits};
    }
  }
#endif
  const torch::Tensor logits = linear_fused(x, gate);
  Routing routing = fused_route_softmax_topk(logits, k, renormalize);
  routing.logits = logits;
  return routing;
}

Routing fused_route_sigmoid_grouped(const torch::Tensor& logits, const torch::Tensor& correction_bias, int64_t n_group,
                                    int64_t topk_group, int64_t k, bool renormalize, double scale) {
#ifdef LB_HAVE_CUDA
  const int64_t E = logits.dim() == 2 ? logits.size(1) : 0;
  if (kernel_takes(logits) && correction_bias.is_cuda() && correction_bias.numel() == E &&
      cuda::sigmoid_grouped_fits(E, n_group, topk_group, k)) {
    const c10::cuda::CUDAGuard guard(logits.device());
    const torch::Tensor lc = logits.contiguous(), bias = correction_bias.to(torch::kFloat32).contiguous();
    RoutingOut r = routing_outputs(lc, k);
    check_launch(cuda::route_sigmoid_grouped(*kernel_dtype(lc), lc.data_ptr(), bias.data_ptr<float>(), lc.size(0), E,
                                             n_group, topk_group, k, renormalize, float(scale),
                                             r.experts.data_ptr<int64_t>(), r.weights.data_ptr<float>(), stream_of(lc)),
                 "sigmoid grouped routing kernel");
    return {r.experts, r.weights};
  }
#endif
  return route_sigmoid_grouped(logits, correction_bias, n_group, topk_group, k, renormalize, scale);
}

}  // namespace lb
