#pragma once
// The pair sort and the warp-per-row MoE experts (kernels/cuda/moe_decode.cu): for decode batches,
// where a grouped GEMM's host-side sizes would cost a synchronization and most of the time. Each
// warp streams weight rows of one expert once and applies them to every pair routed to that
// expert; experts with no pairs exit at once. Any dtype and widths that are multiples of the load
// width; 16-bit types at multiples of 64 take the streamed kernels (kernels/cuda/moe_stream.h)
// instead. kernels/moe_steps.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Pairs (token * k + slot) of routing.experts [pairs] sorted by local expert (expert - first_expert
// in [0, held); others last), one block a key: order [pairs], offsets [held + 1] (expert e's pairs are
// order[offsets[e] .. offsets[e + 1])), row_of_pair [pairs] (each pair's position in order, -1 for
// experts held elsewhere). Up to max_sort_pairs(held) pairs (their keys in a block's shared memory:
// a byte each up to 255 experts held, else two) and kMaxSortExperts experts. `ready` [held], when
// given, is cleared for the expert kernels' counts (kernels/cuda/moe_wgmma.h).
constexpr int64_t kMaxSortPairs = 131072, kMaxSortExperts = 1024;
// Keys 0 .. held (those held elsewhere get held) fit a byte.
constexpr bool sort_keys_fit_a_byte(int64_t held) { return held <= 255; }
constexpr int64_t max_sort_pairs(int64_t held) {
  return sort_keys_fit_a_byte(held) ? kMaxSortPairs : kMaxSortPairs / 2;
}
cudaError_t moe_sort_pairs(const int64_t* experts, int64_t pairs, int64_t first_expert, int64_t held, int64_t* order,
                           int64_t* offsets, int64_t* row_of_pair, cudaStream_t stream, int* ready = nullptr);

// Pairs (token * k + slot) sorted by expert: order[offsets[e] .. offsets[e + 1]) are expert e's,
// offsets in device memory. Row i of `act` [*, inter] is sorted pair i's
//   silu(gate_e x) * (up_e x) * pair_weight[order[i]], x = x[order[i] / k] [hidden],
// with gate_up [experts, 2 * inter, hidden] (gate rows first), sums in fp32.
cudaError_t moe_decode_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                               const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                               int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream);

// Row i of y [*, hidden] = down_e act[i] for the expert e of sorted pair i; down [experts, hidden, inter].
cudaError_t moe_decode_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                            int64_t experts, int64_t hidden, int64_t inter, cudaStream_t stream);

// The widths these kernels read at once: hidden and inter must be multiples of it.
int moe_decode_alignment(Dtype dtype);

}  // namespace lb::cuda
