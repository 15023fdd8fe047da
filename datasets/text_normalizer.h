#pragma once
// The "normalizer" of a byte-level BPE tokenizer.json: none, NFC, NFD, NFKC, NFKD, or a Sequence
// of them (DeepSeek-V3's is an empty Sequence). Anything else (Lowercase, Replace, Prepend, ...)
// is refused by name.
#include "datasets/tokenizer_file.h"
#include "datasets/unicode.h"

#include <string>
#include <vector>

namespace lb {

class TextNormalizer {
 public:
  // `part` is the file's "normalizer" (null: none).
  TextNormalizer(const TokenizerFile& file, const nlohmann::json& part);

  std::string apply(const std::string& text) const;

 private:
  void read(const TokenizerFile& file, const nlohmann::json& part, const std::string& name);
  std::vector<unicode::NormalForm> forms_;  // applied in order
};

}  // namespace lb
