#pragma once
// Launchers of the streamed per-pair MoE experts (kernels/cuda/moe_pair_stream.cu), for the
// smallest decode batches (up to four tokens: no sort, an expert chosen twice is read twice). One
// block per SM walks work items (a few weight rows of one pair's expert, or of all k pairs of one
// token) and keeps the next items' rows on their way into shared memory (cp.async) while it
// computes one, so that every SM has ~96 KB of weights in flight, where the one-block-per-tile
// kernels of moe_pairs.h hold their loads in registers and, timed alone on an H200 at Qwen3's
// shape, read at 1.7-2.8 TB/s. The down kernel adds each token's k rows itself (no combine launch)
// and loads its first weights before the gate/up kernel ends (programmatic dependent launch).
// kernels/moe_steps.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Whether the streamed kernels take these sizes: a 16-bit dtype, hidden and inter multiples of 8,
// one gate row and one up row (2 * hidden elements), and k down rows of inter, within a stage.
bool moe_pair_stream_fits(Dtype dtype, int64_t hidden, int64_t inter, int64_t k);

// act [pairs, inter]: row p = silu(gate_e x) * (up_e x) * pair_weight[p], x = x[p / k] [hidden],
// e = experts[p] - first_expert, gate_up [held, 2 * inter, hidden] (gate rows first), dots in
// fp32; rows of pairs whose expert is not in [0, held) are not written. `sms`: the device's SMs.
cudaError_t moe_pair_stream_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* experts,
                                    int64_t first_expert, int64_t held, const float* pair_weight, void* act,
                                    int64_t pairs, int64_t inter, int64_t hidden, int64_t k, int sms,
                                    cudaStream_t stream);

// out [tokens, hidden]: row t = the sum over s < k, from s = 0 in fp32, of down_e act[t * k + s]
// rounded to the dtype (a zero row for a pair whose expert is not held), rounded once more: what
// a down product per pair and combine_pairs give. down [held, hidden, inter].
cudaError_t moe_pair_stream_down_sum(Dtype dtype, const void* act, const void* down, const int64_t* experts,
                                     int64_t first_expert, int64_t held, void* out, int64_t tokens, int64_t k,
                                     int64_t hidden, int64_t inter, int sms, cudaStream_t stream);

}  // namespace lb::cuda
