#pragma once
// Which tokens of a packed batch each rank holds in the attention layout, as indices into the
// original token order (so gathering and restoring original order is one index_copy).
//
// Sequences go to attention-DP ranks whole (sequence s to DP rank s % dp, so a DP rank may hold
// none); within a DP rank the tokens are split over its CP ranks (zigzag or round-robin); the
// attention TP ranks of one (dp, cp) slot hold the same tokens.
#include "harness/parallel_config.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace lb {

enum class CpSplit {
  None,        // attn_cp must be 1
  Zigzag,      // 2*cp blocks per sequence; rank r owns blocks r and 2cp-1-r (all prevs, then all nexts)
  RoundRobin,  // rank r owns tokens r, r+cp, r+2cp, ... of its DP rank's packed tokens
};
std::string to_string(CpSplit split);

// One index tensor (int64, CPU) per world rank. Throws InputError when the split cannot be made:
// a sequence shorter than 2*cp under zigzag, a token count not a multiple of cp under round-robin,
// or CP without a split.
std::vector<torch::Tensor> split_tokens(const ParallelConfig& p, CpSplit split, const std::vector<int64_t>& seq_lens);

// Zigzag block sizes of one sequence: block i has L/(2cp) tokens plus one if i < L % (2cp).
std::vector<int64_t> zigzag_blocks(int64_t length, int cp);

}  // namespace lb
