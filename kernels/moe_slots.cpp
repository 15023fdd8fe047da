#include "kernels/moe_slots.h"

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/moe_slots.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

namespace {

GemmSlots plain_slots(const torch::Tensor& order, const torch::Tensor& expert, const torch::Tensor& offsets,
                      const torch::Tensor& weights, int64_t rows, int64_t k, int64_t most) {
  const int64_t held = offsets.size(0) - 1, pairs = order.size(0);
  const torch::Tensor mine = order.narrow(0, 0, rows), key = expert.narrow(0, 0, rows);
  const torch::Tensor position = torch::arange(rows, order.options());
  const torch::Tensor slot = most > 0 ? key * most + position - offsets.index_select(0, key) : position;
  const torch::Tensor token = torch::div(mine, k, "floor");
  const torch::Tensor weight = weights.reshape({-1}).index_select(0, mine).to(torch::kFloat32);
  GemmSlots out;
  out.token = most > 0 ? torch::zeros({held * most}, token.options()).index_copy_(0, slot, token) : token;
  out.weight = most > 0 ? torch::zeros({held * most}, weight.options()).index_copy_(0, slot, weight) : weight;
  out.row_of_pair = torch::full({pairs}, -1, order.options()).index_copy_(0, mine, slot);
  return out;
}

}  // namespace

GemmSlots gemm_slots(const torch::Tensor& order, const torch::Tensor& expert, const torch::Tensor& offsets,
                     const torch::Tensor& weights, int64_t rows, int64_t k, int64_t most) {
#ifdef LB_HAVE_CUDA
  const auto d = kernel_dtype(weights);
  if (d && order.is_cuda() && order.scalar_type() == torch::kInt64 && expert.scalar_type() == torch::kInt64 &&
      offsets.scalar_type() == torch::kInt64) {
    const c10::cuda::CUDAGuard guard(order.device());
    const torch::Tensor oc = order.contiguous(), ec = expert.contiguous(), fc = offsets.contiguous();
    const torch::Tensor wc = weights.reshape({-1}).contiguous();
    const int64_t held = offsets.size(0) - 1, pairs = order.size(0), slots = most > 0 ? held * most : rows;
    GemmSlots out;
    out.token = torch::empty({slots}, order.options());
    out.weight = torch::empty({slots}, weights.options().dtype(torch::kFloat32));
    out.row_of_pair = torch::empty({pairs}, order.options());
    check_launch(cuda::moe_gemm_slots(*d, oc.data_ptr<int64_t>(), ec.data_ptr<int64_t>(), fc.data_ptr<int64_t>(),
                                      wc.data_ptr(), pairs, rows, k, most > 0, most, slots,
                                      out.token.data_ptr<int64_t>(), out.weight.data_ptr<float>(),
                                      out.row_of_pair.data_ptr<int64_t>(), stream_of(order)),
                 "MoE GEMM slots kernel");
    return out;
  }
#endif
  return plain_slots(order, expert, offsets, weights, rows, k, most);
}

}  // namespace lb
