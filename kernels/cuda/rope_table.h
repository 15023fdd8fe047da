#pragma once
// The launcher of the rotary table kernel (kernels/cuda/rope_table.cu) behind rope_cos_sin's fused
// path (kernels/rope.h): a decode step's cos and sin in one launch, where the LibTorch ops (float
// positions, outer product, cat, cos, sin, two scales, two casts) took nine.
#include "kernels/cuda/dtype.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// cos[t][c] = round(cos(float(positions[t]) * inv_freq[c % half]) * factor) and the same for sin,
// for t < tokens and c < 2 * half, rounded to `dtype` once, as rope_cos_sin's LibTorch ops do.
cudaError_t rope_table(Dtype dtype, const int64_t* positions, const float* inv_freq, int64_t tokens, int64_t half,
                       float factor, void* cos, void* sin, cudaStream_t stream);

}  // namespace lb::cuda
