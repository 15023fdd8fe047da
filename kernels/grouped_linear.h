#pragma once
// Many small matrix products in one call, as a mixture of experts needs them: the rows of `x` are
// cut into consecutive groups, and group g is multiplied by its own weight matrix.
#include <torch/torch.h>

#include <vector>

namespace lb {

// x [N, K] with N = sum(counts); w [G, M, K] with G = counts.size(). Returns y [N, M], where the
// counts[g] rows of group g are x_g w[g]^T. Groups with no rows cost nothing. On a CUDA device
// one cuBLAS grouped batched GEMM (fp32 accumulation) does every group; on the CPU, a loop.
torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<int64_t>& counts, const torch::Tensor& w);

}  // namespace lb
