#pragma once
// The steps of the fused MoE around its GEMMs: SiLU(gate) * up times the routing weight, the
// fixed-order combine of each token's k rows, and the few-pair experts of a decode batch. Each is
// one CUDA kernel on a GPU (kernels/cuda/moe_rows.cu, kernels/cuda/moe_decode.cu); on the CPU the
// plain ops that compute the same.
#include <torch/torch.h>

namespace lb {

// h [N, 2I], gate columns first: silu(gate) * up * w row by row in fp32, rounded once to h's dtype.
// w: fp32 [N].
torch::Tensor silu_mul_weight(const torch::Tensor& h, const torch::Tensor& w);

// Token t's output: the fp32 sum, slot 0 first, of rows y[row_of_pair[t * k + s]] over its k slots
// (-1: that slot's expert is held elsewhere), in y's dtype. row_of_pair: int64 [tokens * k], or
// undefined for rows in pair order (row t * k + s).
torch::Tensor combine_pairs(const torch::Tensor& y, const torch::Tensor& row_of_pair, int64_t tokens, int64_t k);

// A batch's experts with no host synchronization, in four kernels: the (token, expert) pairs
// sorted by expert (one block a key), gate/up and down with each expert's weight rows streamed once for
// all its pairs (or once per 64 of them), then combine_pairs. Up to two tokens' pairs skip the sort: gate/up
// and down run one block per pair (kernels/cuda/moe_pairs.cu). The same contract as
// fused_moe_experts (experts from first_expert on held here; gate_up [E, 2I, H], down [E, H, I]). An undefined tensor when the
// kernels cannot take these inputs: not on a GPU, too many pairs, or sizes that are not multiples
// of the load width.
torch::Tensor decode_moe(const torch::Tensor& x, const torch::Tensor& experts, const torch::Tensor& weights,
                         const torch::Tensor& gate_up, const torch::Tensor& down, int64_t first_expert);

// The products of pairs already sorted by expert (order [pairs]: pair ids, expert e's at
// offsets[e] .. offsets[e + 1], offsets [held + 1]; weights [tokens, k]) on Hopper's warpgroup
// tensor cores (kernels/cuda/moe_wgmma.h), with no host synchronization: y [pairs, hidden], row i
// the down product of sorted pair i (rows past offsets[held] unwritten). Undefined where those
// kernels do not run (not an sm_90 device, sizes not multiples of 64, other dtypes).
torch::Tensor wgmma_expert_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& offsets,
                                const torch::Tensor& weights, const torch::Tensor& gate_up, const torch::Tensor& down,
                                int64_t k);

// The most pairs decode_moe should take in one call for these inputs (x [tokens, hidden], down
// [E, H, I]): 16384 where the warpgroup kernels (kernels/cuda/moe_wgmma.h) run, 8192 where only
// the streamed kernels (kernels/cuda/moe_stream.h) fit, whose blocks take up to 64 pairs of an
// expert per pass over its weights; otherwise kRowKernelsMaxPairs (64 tokens at top 8), past which
// the warp-per-row kernels fall behind a grouped GEMM.
constexpr int64_t kRowKernelsMaxPairs = 512;
int64_t decode_moe_max_pairs(const torch::Tensor& x, const torch::Tensor& down);

}  // namespace lb
