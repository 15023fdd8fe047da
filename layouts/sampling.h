#pragma once
// Choosing the next token from a row of logits: greedy by default; temperature with optional
// top-k and top-p, seeded, so that every rank of a layout (and the reference) draws the same token.
#include <torch/torch.h>

#include <cstdint>
#include <random>

namespace lb {

struct SamplingOptions {
  double temperature = 0;  // 0: greedy (argmax, the lowest id on a tie)
  int64_t top_k = 0;       // 0: no limit
  double top_p = 1;        // nucleus: the smallest set of most likely tokens reaching this mass
  uint64_t seed = 0;
};

// Throws InputError naming the flag when an option is out of range.
void validate(const SamplingOptions& options);

class Sampler {
 public:
  explicit Sampler(SamplingOptions options);
  // `logits`: float32 [V] on the CPU. Draws use this sampler's own generator, one per sequence,
  // so a sequence's tokens do not depend on which others share its batch.
  int64_t next(const torch::Tensor& logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace lb
