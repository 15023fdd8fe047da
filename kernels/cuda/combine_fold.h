#pragma once
// What the down kernels need to sum each token's rows themselves (kernels/cuda/combine_fold.cuh),
// instead of leaving y [pairs, hidden] to combine_pairs (kernels/cuda/moe_rows.h). The block that
// writes the last of a token's rows in a column tile sums that token's rows there, in slot order
// and in fp32 as combine_pairs does, so the output has the same bits, and the rows are read back
// from L2 instead of from memory in a kernel of their own.
#include "kernels/cuda/dtype.h"

#include <cstdint>

namespace lb::cuda {

struct CombineFold {
  int* arrivals = nullptr;  // [tokens * tiles], zeroed by moe_sort_pairs; null: no folding
  int64_t tiles = 0;        // column tiles counted apart in a token's row: at least the down grid's
  void* out = nullptr;      // [tokens, hidden] in y's dtype; moe_sort_pairs zeroes tokens with no pair here
  Dtype dtype = Dtype::BF16;
  int64_t hidden = 0;
  const int64_t* order = nullptr;        // moe_sort_pairs' order and row_of_pair
  const int64_t* row_of_pair = nullptr;
  int64_t k = 0;
};

// Column tiles of `hidden` to count for every down kernel here: their narrowest tile is 64 columns.
inline int64_t combine_fold_tiles(int64_t hidden) { return (hidden + 63) / 64; }

}  // namespace lb::cuda
