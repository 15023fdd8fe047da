#pragma once
// RMSNorm, residual-add + RMSNorm, and Qwen3's per-head q/k RMSNorm + RoPE, each one CUDA kernel
// on a GPU (kernels/cuda/norm_rope.cu) for `--kernels fused`; on the CPU, and in builds without
// CUDA, the plain ops they replace. Same results as rmsnorm() and apply_rope() up to rounding.
#include "kernels/rope.h"

#include <torch/torch.h>

#include <utility>

namespace lb {

torch::Tensor rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// h = x + residual and rmsnorm(h): returns {h, normed}.
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm_fused(const torch::Tensor& x, const torch::Tensor& residual,
                                                          const torch::Tensor& weight, double eps);

// add_rmsnorm_fused with `fused`, else the plain x + residual and rmsnorm(): the model code's one
// call for both paths.
std::pair<torch::Tensor, torch::Tensor> add_rmsnorm(const torch::Tensor& x, const torch::Tensor& residual,
                                                    const torch::Tensor& weight, double eps, bool fused);

// x [T, heads, dim]: apply_rope(rmsnorm(x, weight, eps), cs, /*interleaved=*/false).
torch::Tensor qk_norm_rope_fused(const torch::Tensor& x, const torch::Tensor& weight, const CosSin& cs, double eps);

// {qk_norm_rope_fused(q, q_weight, ...), qk_norm_rope_fused(k, k_weight, ...)}: on a GPU one kernel
// launch for both (q [T, Hq, dim] and k [T, Hk, dim], the same values as two calls).
std::pair<torch::Tensor, torch::Tensor> qk_norm_rope_pair_fused(const torch::Tensor& q, const torch::Tensor& q_weight,
                                                                const torch::Tensor& k, const torch::Tensor& k_weight,
                                                                const CosSin& cs, double eps);

// A KV cache layer's rows for qk_norm_rope_pair_fused to write: the key and value parts as [rows,
// kv_heads * dim] (contiguous views of the cache), the values [T, kv_heads, dim] (heads packed,
// tokens at any stride) and each token's cache row `at` (int64 [T]).
struct KvRowsOut {
  torch::Tensor keys, values, new_values, at;
};

// qk_norm_rope_pair_fused, and the rotated keys and the new values written to rows at[t] of the
// cache in the same launch (a row outside it skipped, as write_cache_rows_fused does: the same bits
// in the cache), where the kernel takes them: on a GPU, heads of 64, 128 or 256, every tensor on
// q's device in its dtype. `written` says whether the cache was written (else nothing was).
std::pair<torch::Tensor, torch::Tensor> qk_norm_rope_pair_fused(const torch::Tensor& q, const torch::Tensor& q_weight,
                                                                const torch::Tensor& k, const torch::Tensor& k_weight,
                                                                const CosSin& cs, double eps, const KvRowsOut& cache,
                                                                bool* written);

}  // namespace lb
