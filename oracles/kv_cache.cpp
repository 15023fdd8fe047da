#include "oracles/kv_cache.h"

namespace lb {

const std::vector<torch::Tensor>& LayerKvCache::append(const std::vector<torch::Tensor>& parts,
                                                       const TokenPlacement& new_tokens) {
  if (parts_.empty()) {
    parts_ = parts;
    tokens_ = new_tokens;
    return parts_;
  }
  TORCH_CHECK(parts.size() == parts_.size(), "KV cache: ", parts.size(), " parts appended to ", parts_.size());
  for (size_t i = 0; i < parts.size(); ++i) parts_[i] = torch::cat({parts_[i], parts[i]});
  tokens_ = {torch::cat({tokens_.seq, new_tokens.seq}), torch::cat({tokens_.pos, new_tokens.pos})};
  return parts_;
}

}  // namespace lb
