#include "oracles/kv_cache.h"

#include "kernels/cache_write.h"

namespace lb {

KvCache::KvCache(int64_t layers, int64_t slots, int64_t capacity, const std::vector<std::vector<int64_t>>& part_shapes,
                 const torch::TensorOptions& options)
    : slots_(slots), capacity_(capacity) {
  TORCH_CHECK(layers > 0 && slots > 0 && capacity > 0, "KV cache: ", layers, " layers, ", slots, " slots, capacity ",
              capacity);
  for (int64_t l = 0; l < layers; ++l) {
    std::vector<torch::Tensor> parts;
    for (const auto& shape : part_shapes) {
      std::vector<int64_t> full = {slots, capacity};
      full.insert(full.end(), shape.begin(), shape.end());
      // Zeros, not empty: a padded slot's rows are read (and masked) but must never hold NaN.
      parts.push_back(torch::zeros(full, options));
    }
    parts_.push_back(std::move(parts));
  }
  lengths_ = torch::zeros({slots}, options.dtype(torch::kInt64));
}

void KvCache::write(int64_t layer, const std::vector<torch::Tensor>& rows, const torch::Tensor& flat) {
  auto& parts = parts_.at(size_t(layer));
  TORCH_CHECK(rows.size() == parts.size(), "KV cache: ", rows.size(), " parts written to ", parts.size());
  std::vector<torch::Tensor> views;
  for (const torch::Tensor& part : parts) views.push_back(part.view({slots_ * capacity_, -1}));
  // On a GPU one kernel for every part: an index_copy_ per part, plus a copy of a strided view
  // (Qwen3's values are a column block of the qkv product), were 2-3 launches a layer.
  if (write_cache_rows_fused(views, rows, flat)) return;
  for (size_t i = 0; i < parts.size(); ++i)
    views[i].index_copy_(0, flat, rows[i].reshape({rows[i].size(0), views[i].size(1)}).to(parts[i].scalar_type()));
}

}  // namespace lb
