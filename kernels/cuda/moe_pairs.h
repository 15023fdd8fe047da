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

// Whether rows of this length can be read: a multiple of 16 bytes, at most 2048 of them (gate/up
// rows: 1024).
bool moe_pair_rows_fit(Dtype dtype, int64_t hidden, int64_t inter);

}  // namespace lb::cuda
