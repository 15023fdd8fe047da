#pragma once
// The "model" of a byte-level BPE tokenizer.json: the vocabulary, the merges by rank, and the
// merging of one word, as HF's BPE does it. The word's bytes start as GPT-2 byte-level symbols
// (all 256 must be in the vocabulary, so no byte is ever unknown), and the lowest-ranked pair is
// merged first, the leftmost among equals.
#include "datasets/tokenizer_file.h"

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace lb {

class BpeModel {
 public:
  // `model` is the file's "model". Refuses other model types, dropout, subword affixes, and
  // merges of tokens missing from the vocabulary.
  BpeModel(const TokenizerFile& file, const nlohmann::json& model);

  // Appends the ids of one word (UTF-8). Thread-safe.
  void encode_word(const std::string& word, std::vector<int64_t>& ids) const;

  // Tokens as the file writes them ("Ġthe").
  const std::unordered_map<std::string, int64_t>& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int64_t id;  // of the merged token
  };
  std::vector<int64_t> merge_word(const std::string& word) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // by pair_key(left id, right id)
  std::array<int64_t, 256> byte_id_{};           // the single-byte tokens BPE starts from
  bool ignore_merges_ = false;

  // Words repeat (" the", " of"); HF keeps a bounded cache of short ones, so does this.
  static constexpr size_t kCacheEntries = 10000;
  static constexpr size_t kCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace lb
