#include "kernels/cache_write.h"

#include <cstdint>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/cache_write.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

#ifdef LB_HAVE_CUDA
namespace {

// Whether the elements of each row of t ([n, ...]) are packed, whatever the stride between rows
// (a column block of a wider product, such as Qwen3's values in the qkv product, is).
bool rows_packed(const torch::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

bool kernel_takes(const torch::Tensor& part, const torch::Tensor& row, const torch::Tensor& at) {
  const int64_t n = at.size(0);
  return kernel_dtype(part) && part.dim() == 2 && part.is_contiguous() && part.device() == at.device() &&
         row.device() == part.device() && row.scalar_type() == part.scalar_type() && row.dim() >= 1 &&
         row.size(0) == n && (n == 0 || row.numel() / n == part.size(1)) && rows_packed(row);
}

}  // namespace
#endif

bool write_cache_rows_fused(const std::vector<torch::Tensor>& parts, const std::vector<torch::Tensor>& rows,
                            const torch::Tensor& at) {
#ifdef LB_HAVE_CUDA
  if (parts.empty() || parts.size() != rows.size() || parts.size() > size_t(cuda::kCacheWriteMaxParts) ||
      !at.is_cuda() || at.dim() != 1 || at.scalar_type() != torch::kInt64)
    return false;
  for (size_t p = 0; p < parts.size(); ++p)
    if (!kernel_takes(parts[p], rows[p], at)) return false;
  const c10::cuda::CUDAGuard guard(at.device());
  const torch::Tensor ac = at.contiguous();
  cuda::CacheWritePart launch_parts[cuda::kCacheWriteMaxParts] = {};
  for (size_t p = 0; p < parts.size(); ++p) {
    const int64_t element = parts[p].element_size();
    const int64_t row_bytes = parts[p].size(1) * element;
    // One row's stride is anything (and would only narrow the unit of the copy): it is never used.
    const int64_t stride = at.size(0) > 1 ? rows[p].stride(0) * element : row_bytes;
    launch_parts[p] = {rows[p].data_ptr(), stride, parts[p].data_ptr(), row_bytes, parts[p].size(0)};
  }
  check_launch(cuda::cache_write(launch_parts, int(parts.size()), ac.data_ptr<int64_t>(), at.size(0), stream_of(at)),
               "KV cache write kernel");
  return true;
#else
  (void)parts, (void)rows, (void)at;
  return false;
#endif
}

}  // namespace lb
