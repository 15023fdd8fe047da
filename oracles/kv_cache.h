#pragma once
// The keys and values a layer's attention has seen so far, for generation: a decode step appends
// its new tokens and attends to everything kept, so a layer runs on new tokens only.
#include "kernels/attention.h"

#include <torch/torch.h>

#include <vector>

namespace lb {

class LayerKvCache {
 public:
  // `parts` are row-aligned with `tokens` (Qwen: keys and values after RoPE; DeepSeek: the MLA
  // latent and rotary key). Returns every part with the new rows after the kept ones, and
  // tokens() describes them; a sequence's keys are told apart by TokenPlacement::seq.
  const std::vector<torch::Tensor>& append(const std::vector<torch::Tensor>& parts, const TokenPlacement& new_tokens);
  const TokenPlacement& tokens() const { return tokens_; }
  int64_t rows() const { return tokens_.seq.defined() ? tokens_.seq.size(0) : 0; }

 private:
  std::vector<torch::Tensor> parts_;
  TokenPlacement tokens_;
};

using KvCache = std::vector<LayerKvCache>;  // one per decoder layer

}  // namespace lb
