#pragma once
// A byte-level BPE tokenizer read from a HF `tokenizer.json` of the Qwen2/Qwen3 kind, giving the
// same ids as HF tokenizers. Pipeline (../shared/design/models.md): added tokens are cut out of
// the raw text first; every other stretch is NFC-normalized, split by the file's regex (ICU),
// mapped byte by byte to GPT-2's printable characters, and merged by BPE rank.
//
// Anything in the file this pipeline would not reproduce exactly (another model type, normalizer,
// pre-tokenizer, a post-processor that adds tokens, ...) is refused at load with an InputError
// naming the file and the key, rather than encoded differently from HF.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lb {

class Tokenizer {
 public:
  // Throws InputError on a missing or malformed file, and always when built without ICU.
  static Tokenizer from_file(const std::string& path);

  // `text` must be UTF-8 (InputError otherwise). Added tokens written in the text become their
  // ids, as HF's encode(text) does by default. Safe to call from several threads.
  std::vector<int64_t> encode(const std::string& text) const;

  // The bytes the ids stand for. Unlike HF, a cut through a multi-byte character is left as
  // raw bytes instead of U+FFFD. InputError on an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids) const;

  // The id of a vocabulary or added token, written as in the file ("Ġthe", "<|im_end|>").
  int64_t token_id(const std::string& token) const;
  std::optional<int64_t> find_token(const std::string& token) const;

  // "<|endoftext|>" when the file has it, else "<|im_end|>": tokenizer.json does not say which
  // one a model stops on, that is in its generation_config.
  std::optional<int64_t> eos_id() const;

  // One past the largest id, added tokens included (the rows an embedding needs at least).
  int64_t vocab_size() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  struct Impl;  // keeps ICU out of this header
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb
