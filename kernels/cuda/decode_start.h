#pragma once
// The launcher of the decode step's opening kernel (kernels/cuda/decode_start.cu) behind
// decode_step_start_fused (kernels/decode_start.h).
#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Query i of n reads slot[i] (the slots distinct: one query a slot):
//   pos[i] = lengths[slot[i]], read_len[i] = pos[i] + 1, row[i] = pos[i] + capacity * slot[i],
//   x[i] = row ids[i] of `table` (rows of row_bytes bytes; ids outside [0, table_rows) trap, as
//   index_select's device assert does),
// and then every one of the `slots` lengths grows by one (the step's token). Addresses and
// row_bytes must be multiples of 16 bytes (cudaErrorInvalidValue otherwise, nothing launched).
cudaError_t decode_step_start(const int64_t* ids, const void* table, int64_t table_rows, int64_t row_bytes, void* x,
                              int64_t n, int64_t* lengths, int64_t slots, const int64_t* slot, int64_t capacity,
                              int64_t* pos, int64_t* read_len, int64_t* row, cudaStream_t stream);

}  // namespace lb::cuda
