#pragma once
// Launchers of the one-block-per-pair MoE experts (kernels/cuda/moe_pairs.cu), for the smallest
// decode batches (up to four tokens), where sorting the pairs would cost a launch and nearly every
// expert serves one pair anyway: an expert chosen twice is read twice. A block keeps a few weight
// rows of its pair's expert in registers, split along their length over its threads, and sums the
// partial dot products over the block in a fixed order. On sm_90 the down kernel loads its weights
// while the gate/up kernel is still running (programmatic dependent launch).
// kernels/moe_steps.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Row p of act [pairs, inter] = silu(gate_e x) * (up_e x) * pair_weight[p], x = x[p / k] [hidden],
// e = experts[p] - first_expert, with gate_up [held, 2 * inter, hidden] (gate rows first), sums in
// fp32; rows of pairs whose expert is not in [0, held) are not written.
cudaError_t moe_pair_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* experts,
                             int64_t first_expert, int64_t held, const float* pair_weight, void* act, int64_t pairs,
                             int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream);

// Row p of y [pairs, hidden] = down_e act[p], down [held, hidden, inter]; zero for pairs whose
// expert is not held, so that the combine may add every row.
cudaError_t moe_pair_down(Dtype dtype, const void* act, const void* down, const int64_t* experts, int64_t first_expert,
                          int64_t held, void* y, int64_t pairs, int64_t hidden, int64_t inter, cudaStream_t stream);

// Output row t of out [tokens, hidden] = the sum over s < k of moe_pair_down's row t * k + s, each
// rounded to the dtype first and added in fp32 from s = 0 on, as combine_pairs adds them: the same
// bits as moe_pair_down and then combine_pairs, in one launch. Where moe_pair_down_sum_fits: a
// token's k pairs in one block (Qwen3's inter 768 at top 8: 768 threads).
bool moe_pair_down_sum_fits(Dtype dtype, int64_t tokens, int64_t k, int64_t hidden, int64_t inter);
cudaError_t moe_pair_down_sum(Dtype dtype, const void* act, const void* down, const int64_t* experts,
                              int64_t first_expert, int64_t held, void* out, int64_t tokens, int64_t k, int64_t hidden,
                              int64_t inter, cudaStream_t stream);

// Whether rows of this length can be read: a multiple of 16 bytes, at most 2048 of them (gate/up
// rows: 1024).
bool moe_pair_rows_fit(Dtype dtype, int64_t hidden, int64_t inter);

}  // namespace lb::cuda
