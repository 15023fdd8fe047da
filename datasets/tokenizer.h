#pragma once
// A byte-level BPE tokenizer read from a HF `tokenizer.json` (Qwen2/Qwen3, DeepSeek-V3, GPT-2
// and their kind), giving the same ids as HF tokenizers. The pipeline, HF's own
// (../shared/design/models.md):
//   1. added tokens with normalized false are cut out of the raw text;
//   2. each stretch between them is normalized (datasets/text_normalizer.h), and added tokens
//      with normalized true are cut out of it (datasets/added_tokens.h);
//   3. each remaining stretch is split into words (datasets/pre_tokenizer.h), and each word's
//      bytes are merged by BPE rank (datasets/bpe_model.h);
//   4. on request, the post-processor's special tokens go around the ids (datasets/post_processor.h).
// Anything in the file this would not reproduce exactly (another model type, normalizer or
// pre-tokenizer kind, truncation, ...) is refused at load with an InputError naming the file and
// the key, rather than encoded differently from HF.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lb {

class Tokenizer {
 public:
  // Throws InputError on a missing, malformed or unsupported file, and always when built without ICU.
  static Tokenizer from_file(const std::string& path);

  // Whether encode() puts the post-processor's special tokens (a BOS, an EOS) around the ids, as
  // HF's encode(text, add_special_tokens=True) does. Prompts written out as text, as the
  // harness's are, leave them out.
  enum class SpecialTokens { Leave, Add };

  // `text` must be UTF-8 (InputError otherwise). Added tokens written in the text become their
  // ids, as in HF. Safe to call from several threads.
  std::vector<int64_t> encode(const std::string& text, SpecialTokens special = SpecialTokens::Leave) const;

  // The bytes the ids stand for. Unlike HF, a cut through a multi-byte character is left as
  // raw bytes instead of U+FFFD, and an unknown id is an InputError rather than skipped.
  std::string decode(const std::vector<int64_t>& ids) const;

  // The id of a vocabulary or added token, written as in the file ("Ġthe", "<|im_end|>").
  int64_t token_id(const std::string& token) const;
  std::optional<int64_t> find_token(const std::string& token) const;

  // The first of "<|endoftext|>" (Qwen), "<|im_end|>" (Qwen chat), "<｜end▁of▁sentence｜>"
  // (DeepSeek) the file has: tokenizer.json does not say which one a model stops on, that is in
  // its generation_config.
  std::optional<int64_t> eos_id() const;

  // One past the largest id, added tokens included (the rows an embedding needs at least).
  int64_t vocab_size() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb
