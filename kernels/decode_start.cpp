#include "kernels/decode_start.h"

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/decode_start.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

std::optional<DecodeStart> decode_step_start_fused(const torch::Tensor& ids, const torch::Tensor& table,
                                                   torch::Tensor& lengths, const torch::Tensor& slot,
                                                   int64_t capacity) {
#ifdef LB_HAVE_CUDA
  const torch::Device device = table.device();
  auto int64_on_device = [&](const torch::Tensor& t) {
    return t.defined() && t.device() == device && t.scalar_type() == torch::kInt64 && t.dim() == 1 && t.is_contiguous();
  };
  const int64_t n = ids.numel();
  if (!table.is_cuda() || table.dim() != 2 || !table.is_contiguous() || !int64_on_device(ids) ||
      !int64_on_device(lengths) || !int64_on_device(slot) || slot.numel() != n || n == 0 ||
      (table.size(1) * table.element_size()) % 16 != 0 || !aligned16(table))
    return std::nullopt;
  const c10::cuda::CUDAGuard guard(device);
  DecodeStart out;
  out.x = torch::empty({n, table.size(1)}, table.options());
  const torch::Tensor ints = torch::empty({3, n}, lengths.options());
  out.pos = ints[0], out.read_len = ints[1], out.row = ints[2];
  check_launch(cuda::decode_step_start(ids.data_ptr<int64_t>(), table.data_ptr(), table.size(0),
                                       table.size(1) * table.element_size(), out.x.data_ptr(), n,
                                       lengths.data_ptr<int64_t>(), lengths.numel(), slot.data_ptr<int64_t>(),
                                       capacity, out.pos.data_ptr<int64_t>(), out.read_len.data_ptr<int64_t>(),
                                       out.row.data_ptr<int64_t>(), stream_of(table)),
               "decode step start kernel");
  return out;
#else
  (void)ids, (void)table, (void)lengths, (void)slot, (void)capacity;
  return std::nullopt;
#endif
}

}  // namespace lb
