#pragma once
// The "pre_tokenizer" of a byte-level BPE tokenizer.json: what cuts normalized text into the words
// that BPE merges within. Supported, nested in Sequences to any depth: Split (a Regex or String
// pattern, any behavior, inverted or not), Digits, and ByteLevel (with or without its own GPT-2
// regex and prefix space), which must come last since it maps the bytes to GPT-2's alphabet and
// a split after it would see that alphabet. Every other kind is refused by name, and so is a file
// with no ByteLevel: it is not a byte-level BPE.
#include "datasets/tokenizer_file.h"
#include "datasets/unicode.h"

#include <optional>
#include <string>
#include <vector>

namespace lb {

class PreTokenizer {
 public:
  // `part` is the file's "pre_tokenizer".
  PreTokenizer(const TokenizerFile& file, const nlohmann::json& part);

  // The words of `text` in order, as UTF-8 (the byte mapping is BPE's business). Thread-safe.
  std::vector<std::string> split(const std::string& text) const;

  // What HF's SplitDelimiterBehavior does with a match.
  enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

 private:
  struct Step {
    bool prefix_space = false;            // ByteLevel's add_prefix_space: a space before each piece lacking one
    std::optional<unicode::Regex> regex;  // otherwise: a Split by this pattern
    Behavior behavior = Behavior::Isolated;
    bool invert = false;
  };
  void read(const TokenizerFile& file, const nlohmann::json& part, const std::string& name);
  void read_split(const TokenizerFile& file, const nlohmann::json& part, const std::string& name);
  void add_split(const std::string& pattern, bool literal, Behavior behavior, bool invert);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace lb
