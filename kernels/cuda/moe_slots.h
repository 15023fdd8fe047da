#pragma once
// The launcher of the kernel that lays out a prefill's expert GEMM inputs (kernels/cuda/moe_slots.cu)
// behind gemm_slots (kernels/moe_slots.h).
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Pairs (token * k + choice) sorted by held expert: order [pairs] their ids, expert [pairs] the
// held expert of each (rows of them held here, the rest elsewhere, last), offsets [held + 1] where
// each expert's run starts. Writes, for each of `slots` GEMM rows, the token it reads (padding: 0)
// and the pair's routing weight in fp32 (padding: 0), and for each pair its GEMM row (-1 for pairs
// held elsewhere). `padded`: expert e's rows are e * most .. e * most + most - 1 (slots = held *
// most); else the pairs' sorted positions (slots = rows). `weights` [pairs] has element type `dtype`.
cudaError_t moe_gemm_slots(Dtype dtype, const int64_t* order, const int64_t* expert, const int64_t* offsets,
                           const void* weights, int64_t pairs, int64_t rows, int64_t k, bool padded, int64_t most,
                           int64_t slots, int64_t* slot_token, float* slot_weight, int64_t* row_of_pair,
                           cudaStream_t stream);

}  // namespace lb::cuda
