#include "layouts/token_split.h"

#include "harness/runtime/errors.h"

#include <numeric>

namespace lb {

std::string to_string(CpSplit split) {
  switch (split) {
    case CpSplit::None: return "none";
    case CpSplit::Zigzag: return "zigzag";
    case CpSplit::RoundRobin: return "round-robin";
  }
  return "?";
}

std::vector<int64_t> zigzag_blocks(int64_t length, int cp) {
  const int64_t n = 2 * cp;
  std::vector<int64_t> blocks(n);
  for (int64_t i = 0; i < n; ++i) blocks[i] = length / n + (i < length % n ? 1 : 0);
  return blocks;
}

namespace {

// Tokens of one DP rank, in packed order, split over cp ranks.
// `uneven`: round-robin may leave CP ranks one token apart (generation's dealt split).
std::vector<std::vector<int64_t>> split_over_cp(const std::vector<std::vector<int64_t>>& sequences, int cp,
                                                CpSplit split, bool uneven = false) {
  std::vector<std::vector<int64_t>> ranks(cp);
  if (split == CpSplit::None || cp == 1) {
    for (const auto& s : sequences) ranks[0].insert(ranks[0].end(), s.begin(), s.end());
    return ranks;
  }
  if (split == CpSplit::RoundRobin) {
    std::vector<int64_t> all;
    for (const auto& s : sequences) all.insert(all.end(), s.begin(), s.end());
    if (all.size() % cp != 0 && !uneven)
      throw InputError("round-robin CP split: " + std::to_string(all.size()) +
                       " tokens on a DP rank is not a multiple of attn_cp = " + std::to_string(cp) +
                       " (padding is not implemented; choose lengths whose sum divides by attn_cp)");
    for (size_t t = 0; t < all.size(); ++t) ranks[t % cp].push_back(all[t]);
    return ranks;
  }
  // Zigzag: all "prev" blocks of the batch first, then all "next" blocks.
  for (size_t s = 0; s < sequences.size(); ++s)
    if (int64_t(sequences[s].size()) < 2 * cp)
      throw InputError("zigzag CP split: a sequence of " + std::to_string(sequences[s].size()) +
                       " tokens is shorter than 2 * attn_cp = " + std::to_string(2 * cp) +
                       " and cannot be split (SGLang runs such a batch without CP; this harness refuses)");
  for (int r = 0; r < cp; ++r) {
    for (int half = 0; half < 2; ++half) {
      const int block = half == 0 ? r : 2 * cp - 1 - r;
      for (const auto& s : sequences) {
        const std::vector<int64_t> blocks = zigzag_blocks(int64_t(s.size()), cp);
        const int64_t start = std::accumulate(blocks.begin(), blocks.begin() + block, int64_t{0});
        ranks[r].insert(ranks[r].end(), s.begin() + start, s.begin() + start + blocks[block]);
      }
    }
  }
  return ranks;
}

// dp rank -> its sequences' token indices (sequence s goes to DP rank s % dp).
std::vector<std::vector<std::vector<int64_t>>> tokens_per_dp(const ParallelConfig& p,
                                                             const std::vector<int64_t>& seq_lens) {
  std::vector<std::vector<std::vector<int64_t>>> per_dp(p.dp);
  int64_t offset = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    std::vector<int64_t> tokens(seq_lens[s]);
    std::iota(tokens.begin(), tokens.end(), offset);
    offset += seq_lens[s];
    per_dp[s % p.dp].push_back(std::move(tokens));
  }
  return per_dp;
}

// Whether `split` can take the tokens of every DP rank as they are.
bool split_fits(const ParallelConfig& p, CpSplit split, const std::vector<std::vector<std::vector<int64_t>>>& per_dp) {
  if (p.attn_cp == 1 || split == CpSplit::None) return true;
  for (const auto& sequences : per_dp) {
    size_t total = 0;
    for (const auto& s : sequences) {
      if (split == CpSplit::Zigzag && int64_t(s.size()) < 2 * p.attn_cp) return false;
      total += s.size();
    }
    if (split == CpSplit::RoundRobin && total % p.attn_cp != 0) return false;
  }
  return true;
}

}  // namespace

std::vector<torch::Tensor> split_tokens(const ParallelConfig& p, CpSplit split, const std::vector<int64_t>& seq_lens,
                                        bool dealt) {
  if (p.attn_cp > 1 && split == CpSplit::None)
    throw InputError("attn_cp = " + std::to_string(p.attn_cp) + " needs a CP token split (this layout has none)");
  const auto per_dp = tokens_per_dp(p, seq_lens);
  std::vector<torch::Tensor> out(p.world());
  for (int dp = 0; dp < p.dp; ++dp) {
    const auto cp_tokens = dealt ? split_over_cp(per_dp[dp], p.attn_cp, CpSplit::RoundRobin, /*uneven=*/true)
                                 : split_over_cp(per_dp[dp], p.attn_cp, split);
    for (int cp = 0; cp < p.attn_cp; ++cp)
      for (int tp = 0; tp < p.attn_tp(); ++tp)
        out[attention_rank(p, dp, cp, tp)] = torch::tensor(cp_tokens[cp], torch::kInt64);
  }
  return out;
}

GenerationSplit split_generation_tokens(const ParallelConfig& p, CpSplit split, const std::vector<int64_t>& seq_lens,
                                        bool decode) {
  const bool own = !decode && split_fits(p, split, tokens_per_dp(p, seq_lens));
  return {split_tokens(p, split, seq_lens, /*dealt=*/!own && p.attn_cp > 1), own || p.attn_cp == 1};
}

}  // namespace lb
