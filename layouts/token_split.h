#pragma once
// Which tokens of a packed batch each rank holds in the attention layout, as indices into the
// original token order (so gathering and restoring original order is one index_copy).
//
// Sequences go to attention-DP ranks whole (sequence s to DP rank s % dp, so a DP rank may hold
// none); within a DP rank the tokens are split over its CP ranks (zigzag or round-robin); the
// attention TP ranks of one (dp, cp) slot hold the same tokens.
#include "harness/runtime/parallel_config.h"

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
// `dealt`: ignore `split` and deal each DP rank's tokens round-robin over its CP ranks, counts
// differing by at most one (see split_generation_tokens).
std::vector<torch::Tensor> split_tokens(const ParallelConfig& p, CpSplit split, const std::vector<int64_t>& seq_lens,
                                        bool dealt = false);

// Generation's split. A prefill batch the layout's split takes is split that way. A decode step
// (one new token per sequence, fewer than 2*cp) and a batch the split cannot take (zigzag with a
// sequence shorter than 2*cp, round-robin with a count that does not divide) are dealt over the CP
// ranks instead: every CP rank keeps the KV cache of its whole CP group, so any of them can attend
// for any token of the group. Sequence s stays on DP rank s % dp, where its cache is.
struct GenerationSplit {
  std::vector<torch::Tensor> tokens;  // as split_tokens
  bool layout_split = true;           // false when dealt in place of the layout's CP split
};
GenerationSplit split_generation_tokens(const ParallelConfig& p, CpSplit split, const std::vector<int64_t>& seq_lens,
                                        bool decode);

// Zigzag block sizes of one sequence: block i has L/(2cp) tokens plus one if i < L % (2cp).
std::vector<int64_t> zigzag_blocks(int64_t length, int cp);

}  // namespace lb
