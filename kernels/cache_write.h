#pragma once
// A decode step's new KV cache rows written in one CUDA kernel for all parts of a layer
// (kernels/cuda/cache_write.cu), reading strided views in place; KvCache::write calls it and
// keeps index_copy_ for what the kernel does not take (the CPU among them).
#include <torch/torch.h>

#include <vector>

namespace lb {

// Writes row i of rows[p] ([n, ...]) to row at[i] of parts[p] ([cache rows, width], contiguous)
// for every part p, as parts[p].index_copy_(0, at, rows[p].reshape({n, width})) does, in one
// kernel launch. Returns false, having written nothing, unless every tensor is on one CUDA device,
// each rows[p] has its part's dtype (f32, bf16 or f16) and width with the elements of a row packed
// (rows at any stride), at is int64 [n], and there are at most 4 parts. Unlike index_copy_, a row
// whose at[i] lies outside the cache is skipped, not an error (nothing is read on the host).
bool write_cache_rows_fused(const std::vector<torch::Tensor>& parts, const std::vector<torch::Tensor>& rows,
                            const torch::Tensor& at);

}  // namespace lb
