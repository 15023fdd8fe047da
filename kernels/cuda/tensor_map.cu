#include "kernels/cuda/tensor_map.h"

#include <cudaTypedefs.h>

#include <cstdint>

namespace lb::cuda {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

}  // namespace

bool tensor_maps_available() { return tensor_map_encoder() != nullptr; }

cudaError_t weight_tensor_map(CUtensorMap* map, Dtype dtype, const void* weight, int64_t rows, int64_t K,
                              int box_rows) {
  const auto encode = tensor_map_encoder();
  if (!encode || rows > INT32_MAX) return cudaErrorNotSupported;
  if (dtype == Dtype::F32 || box_rows <= 0 || box_rows > 256) return cudaErrorInvalidValue;
  constexpr cuuint32_t kBoxCols = 64;  // 128 bytes: the widest box the 128-byte swizzle takes
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(K) * 2};
  const cuuint32_t box[2] = {kBoxCols, cuuint32_t(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const auto type = dtype == Dtype::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = encode(map, type, 2, const_cast<void*>(weight), dims, strides, box, element_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace lb::cuda
