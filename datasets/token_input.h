#pragma once
// The token ids a run feeds the model: random (deterministic by seed) or read from a JSON file.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace lb {

struct TokenBatch {
  torch::Tensor ids;              // int64 [T], sequences packed end to end
  std::vector<int64_t> seq_lens;  // sums to T
};

// "37,5,64" -> {37, 5, 64}; InputError naming `flag` on anything but positive integers.
std::vector<int64_t> parse_lengths(const std::string& text, const std::string& flag);

TokenBatch random_tokens(const std::vector<int64_t>& seq_lens, int64_t vocab, uint64_t seed);

// A JSON file holding one sequence ([1, 2, 3]), several ([[1, 2], [3]]), or either under
// "input_ids". Every id must be in [0, vocab).
TokenBatch read_token_file(const std::string& path, int64_t vocab);

}  // namespace lb
