#pragma once
// Launchers of the row-wise steps of the fused MoE (kernels/cuda/moe_rows.cu), on raw device
// pointers; kernels/moe_steps.h wraps them.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// out[r] = round(silu(h[r, :inter]) * h[r, inter:] * w[r]) for `rows` rows of h [rows, 2 * inter],
// all in fp32 (w fp32 [rows], or null for 1).
cudaError_t silu_mul_weight(Dtype dtype, const void* h, const float* w, void* out, int64_t rows, int64_t inter,
                            cudaStream_t stream);

// out[t] = round(sum over s < k, in order, of y[row_of_pair[t * k + s]]) in fp32, skipping -1 rows;
// y [*, hidden], out [tokens, hidden]. A null row_of_pair reads row t * k + s. cudaErrorInvalidValue
// where tokens * k passes INT32_MAX (the kernel holds pair rows as int). rows_settled: the
// kernel reads row_of_pair before waiting for the kernel before it (kernels/cuda/chained_launch.cuh),
// so it must be complete by the time that kernel was launched: the pair sort's rows are, after
// the streamed expert kernels, whose gate/up lets the rest launch only once the sort is done.
cudaError_t combine_pairs(Dtype dtype, const void* y, const int64_t* row_of_pair, void* out, int64_t tokens, int64_t k,
                          int64_t hidden, cudaStream_t stream, bool rows_settled = false);

}  // namespace lb::cuda
