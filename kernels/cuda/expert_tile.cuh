#pragma once
// What the tiled expert kernels share about their weight tiles: where a thread's 16-byte piece of a
// tile row comes from (kernels/cuda/moe_stream.cu; kernels/cuda/moe_wgmma.cu loads whole tiles by
// TMA), and how many blocks share a tile (both).
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lb::cuda {

// Piece c (8 elements) of row r of matrix m of the weight tile from row0 of expert e, in weights
// [experts * mats, out_cols, K]. A row past out_cols reads the last row instead: valid memory, its
// products never stored.
template <typename T>
__device__ inline const T* weight_piece(const T* weight, int64_t e, int mats, int m, int64_t row0, int r, int c,
                                        int64_t out_cols, int64_t K) {
  const int64_t row = row0 + r < out_cols ? row0 + r : out_cols - 1;
  return weight + ((e * mats + m) * out_cols + row) * K + c * 8;
}

// Blocks per row tile, each taking every passes-th group of kN pairs (launched side by side, so
// the later reads of the tile mostly come from L2): enough that an expert with a quarter more
// pairs than the average is done in one round.
inline int passes_for(double average, int kN) { return std::max(1, int(std::ceil(1.25 * average / kN))); }

}  // namespace lb::cuda
