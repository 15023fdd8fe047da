#pragma once
// Launchers of the expert products on Hopper's warpgroup tensor cores (kernels/cuda/moe_wgmma.cu,
// built for sm_90a only): the contract of the streamed kernels (kernels/cuda/moe_stream.h), for
// prefill-sized batches, where an expert's pairs number in the hundreds and mma.sync's 16-row
// products, not memory, set the pace. A block holds 128 weight rows of one expert's gate and up
// each (64 each, three blocks an SM, where a pass takes at most 64 pairs), or 256 of its down, and
// up to 128 of its sorted pairs a pass, multiplying the smallest multiple of 32 that holds them;
// shared-memory stages (weights by TMA, the pairs' rows by cp.async) feed wgmma directly;
// SiLU(gate) * up * the routing weight is the gate/up epilogue, and both products write their rows
// through shared memory in 16-byte pieces.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Whether these kernels run here: built for sm_90a, the current device is compute capability 9.0
// and its driver encodes TMA tensor maps, a 16-bit dtype, hidden and inter multiples of 64.
bool moe_wgmma_fits(Dtype dtype, int64_t hidden, int64_t inter);

// As moe_stream_gate_up / moe_stream_down; the block shapes and pass sizes follow from the average
// pairs per expert, the same for both.
// `ready` [experts], cleared beforehand (moe_sort_pairs does), lets down start on an expert as soon
// as gate/up is done with it: gate/up adds each expert's pairs done, per row tile, and down waits
// for its expert's count instead of the end of the gate/up kernel, which it must follow on the
// stream at once. Qwen3 on an H200 at 6a29938, two rounds: 256-2048 tokens 1-5% faster (2048:
// 0.448-0.454 ms against 0.470-0.471), elsewhere level.
cudaError_t moe_wgmma_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                              const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                              int64_t pairs, int64_t inter, int64_t hidden, int64_t k, int* ready,
                              cudaStream_t stream);
cudaError_t moe_wgmma_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                           int64_t experts, int64_t pairs, int64_t hidden, int64_t inter, int* ready,
                           cudaStream_t stream);

}  // namespace lb::cuda
