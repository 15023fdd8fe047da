#pragma once
// Tensor maps of expert weights, for the kernels that read weight tiles by TMA (kernels/cuda/tma.cuh):
// encoded on the host by the driver's cuTensorMapEncodeTiled, which is found through the runtime,
// so nothing links to libcuda.
#include "kernels/cuda/dtype.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// Whether the driver here encodes tensor maps.
bool tensor_maps_available();

// The 16-bit weights [rows, K] as TMA reads them: boxes of 64 columns by box_rows rows, with the
// 128-byte swizzle (chunk c of row r at chunk c ^ (r % 8): the layout kernels/cuda/wgmma.cuh's
// tiles use). cudaErrorNotSupported without the encoder or past 2^31 rows.
cudaError_t weight_tensor_map(CUtensorMap* map, Dtype dtype, const void* weight, int64_t rows, int64_t K,
                              int box_rows);

}  // namespace lb::cuda
