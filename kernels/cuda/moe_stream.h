#pragma once
// Launchers of the streamed expert products (kernels/cuda/moe_stream.cu), for 16-bit types when
// experts average two or more pairs: decode batches past a few sequences and prefill chunks up to
// about a thousand tokens, where the weights of every chosen expert are read once (or a few times)
// and memory bandwidth is the bound. Each block streams 64 weight rows of one expert (of gate and
// up together) through shared memory in a cp.async pipeline, with the rows of that expert's pairs
// beside them, and multiplies on the tensor cores. Launch shapes come from sizes only; the pairs
// come sorted by kernels/cuda/moe_decode.h's moe_sort_pairs, so nothing waits on the host.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Whether these kernels take the shapes: a 16-bit dtype, hidden and inter multiples of 64.
bool moe_stream_fits(Dtype dtype, int64_t hidden, int64_t inter);

// The same contract as moe_decode_gate_up / moe_decode_down (kernels/cuda/moe_decode.h): sorted
// pair i's act row is silu(gate_e x) * (up_e x) * pair_weight[order[i]], its y row down_e act[i];
// `pairs` (the total, held elsewhere included) sets how many pairs a block takes per pass.
// `ready` [experts], cleared by moe_sort_pairs and given to both launches or neither, lets down start
// on an expert as soon as gate/up has written that expert's rows (as in kernels/cuda/moe_wgmma.h);
// without it down waits for the whole gate/up kernel.
cudaError_t moe_stream_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* order,
                               const int64_t* offsets, const float* pair_weight, void* act, int64_t experts,
                               int64_t pairs, int64_t inter, int64_t hidden, int64_t k, cudaStream_t stream,
                               int* ready = nullptr);
cudaError_t moe_stream_down(Dtype dtype, const void* act, const void* down, const int64_t* offsets, void* y,
                            int64_t experts, int64_t pairs, int64_t hidden, int64_t inter, cudaStream_t stream,
                            int* ready = nullptr);

}  // namespace lb::cuda
