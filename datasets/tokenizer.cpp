// The tokenizer's pipeline over its parts (see tokenizer.h).
#include "datasets/tokenizer.h"

#include "datasets/added_tokens.h"
#include "datasets/bpe_model.h"
#include "datasets/byte_level.h"
#include "datasets/post_processor.h"
#include "datasets/pre_tokenizer.h"
#include "datasets/text_normalizer.h"
#include "datasets/tokenizer_file.h"
#include "datasets/unicode.h"
#include "datasets/utf8.h"
#include "harness/runtime/errors.h"

#include <unordered_map>

namespace lb {
namespace {

using json = nlohmann::json;

// Parts that change nothing this tokenizer does, or are refused.
void check_other_parts(const TokenizerFile& file) {
  for (const char* key : {"truncation", "padding"}) {
    if (!optional_member(file.root(), key).is_null())
      file.refuse(std::string(key) + " is set; this tokenizer never truncates or pads");
  }
  const json decoder = optional_member(file.root(), "decoder");
  if (decoder.is_null()) file.refuse("decoder is null; only a ByteLevel decoder is supported");
  const std::string type = file.type_of(decoder, "decoder");
  // Whatever its flags say, HF's ByteLevel decoder only maps the alphabet back to bytes.
  if (type != "ByteLevel") file.refuse("unsupported decoder type " + type + " (only ByteLevel)");
}

}  // namespace

struct Tokenizer::Impl {
  explicit Impl(const TokenizerFile& file)
      : path(file.path()),
        bpe(file, file.member(file.root(), "model", "model")),
        normalizer(file, optional_member(file.root(), "normalizer")),
        pre_tokenizer(file, optional_member(file.root(), "pre_tokenizer")),
        special(read_post_processor(file, optional_member(file.root(), "post_processor"))) {
    check_other_parts(file);
    for (const auto& [token, id] : bpe.vocab()) set_decoding(id, token_bytes(token));
    load_added_tokens(file);
  }

  void load_added_tokens(const TokenizerFile& file);
  void set_decoding(int64_t id, std::string bytes);

  std::string path;
  BpeModel bpe;
  TextNormalizer normalizer;
  PreTokenizer pre_tokenizer;
  SpecialTokenFrame special;
  AddedTokenMatcher raw_tokens{{}};         // normalized false: found in the raw text
  AddedTokenMatcher normalized_tokens{{}};  // normalized true: found in normalized stretches
  std::unordered_map<std::string, int64_t> added_ids;
  std::vector<std::string> id_bytes;  // what decode writes for each id
  std::vector<bool> id_known;
};

void Tokenizer::Impl::set_decoding(int64_t id, std::string bytes) {
  if (id >= static_cast<int64_t>(id_bytes.size())) {
    id_bytes.resize(id + 1);
    id_known.resize(id + 1, false);
  }
  id_bytes[id] = std::move(bytes);
  id_known[id] = true;
}

void Tokenizer::Impl::load_added_tokens(const TokenizerFile& file) {
  const json tokens = optional_member(file.root(), "added_tokens");
  if (tokens.is_null()) return;
  if (!tokens.is_array()) file.refuse("added_tokens must be an array");
  std::vector<AddedToken> raw, normalized;
  // HF gives an added token the id its content already has (in the vocabulary or an earlier added
  // token), else the next one after the vocabulary; it only warns when the file says otherwise.
  int64_t next_id = static_cast<int64_t>(bpe.vocab().size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string name = "added_tokens[" + std::to_string(i) + "]";
    const json& t = tokens[i];
    AddedToken token;
    token.id = file.id(file.member(t, "id", name + ".id"), name + ".id");
    token.content = file.text(file.member(t, "content", name + ".content"), name + ".content");
    const std::string named = name + " (" + json(token.content).dump() + ")";
    token.single_word = file.flag(t, "single_word", named, false);
    token.lstrip = file.flag(t, "lstrip", named, false);
    token.rstrip = file.flag(t, "rstrip", named, false);
    const bool is_normalized = file.flag(t, "normalized", named, false);

    const auto in_vocab = bpe.vocab().find(token.content);
    const auto earlier = added_ids.find(token.content);
    const int64_t hf_id = earlier != added_ids.end() ? earlier->second
                          : in_vocab != bpe.vocab().end() ? in_vocab->second
                                                           : next_id++;
    if (token.id != hf_id)
      file.refuse(named + ".id is " + std::to_string(token.id) + " but HF tokenizers gives this token id " +
                  std::to_string(hf_id) + " (the id its content has, or the next one after the vocabulary)");

    added_ids[token.content] = token.id;
    if (is_normalized) token.content = normalizer.apply(token.content);  // what it matches, and decodes to
    // HF decodes an added token through the decoder too, from its normalized form when it has one.
    set_decoding(token.id, token_bytes(token.content));
    (is_normalized ? normalized : raw).push_back(token);
  }
  raw_tokens = AddedTokenMatcher(std::move(raw));
  normalized_tokens = AddedTokenMatcher(std::move(normalized));
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (!unicode::available())
    throw InputError(path + ": this build has no ICU, which the tokenizer needs for normalization and its split "
                            "regexes (install libicu-dev and rebuild)");
  const TokenizerFile file(path);
  return Tokenizer(std::make_unique<Impl>(file));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, SpecialTokens special) const {
  const size_t bad = first_invalid_utf8(text);
  if (bad < text.size()) throw InputError("tokenizer input is not valid UTF-8 at byte " + std::to_string(bad));
  const Impl& t = *impl_;
  std::vector<int64_t> ids;
  if (special == SpecialTokens::Add) ids = t.special.before;
  for (const AddedTokenMatcher::Segment& raw : t.raw_tokens.split(text)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string normalized = t.normalizer.apply(text.substr(raw.begin, raw.end - raw.begin));
    for (const AddedTokenMatcher::Segment& part : t.normalized_tokens.split(normalized)) {
      if (part.id >= 0) {
        ids.push_back(part.id);
        continue;
      }
      for (const std::string& word : t.pre_tokenizer.split(normalized.substr(part.begin, part.end - part.begin)))
        t.bpe.encode_word(word, ids);
    }
  }
  if (special == SpecialTokens::Add) ids.insert(ids.end(), t.special.after.begin(), t.special.after.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  for (int64_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(impl_->id_bytes.size()) || !impl_->id_known[id])
      throw InputError("token id " + std::to_string(id) + " is not in the vocabulary of " + impl_->path);
    text += impl_->id_bytes[id];
  }
  return text;
}

std::optional<int64_t> Tokenizer::find_token(const std::string& token) const {
  const auto added = impl_->added_ids.find(token);
  if (added != impl_->added_ids.end()) return added->second;
  const auto it = impl_->bpe.vocab().find(token);
  if (it != impl_->bpe.vocab().end()) return it->second;
  return std::nullopt;
}

int64_t Tokenizer::token_id(const std::string& token) const {
  const std::optional<int64_t> id = find_token(token);
  if (!id) throw InputError("token " + json(token).dump() + " is not in the vocabulary of " + impl_->path);
  return *id;
}

std::optional<int64_t> Tokenizer::eos_id() const {
  for (const char* name : {"<|endoftext|>", "<|im_end|>", "<｜end▁of▁sentence｜>"}) {
    const auto it = impl_->added_ids.find(name);
    if (it != impl_->added_ids.end()) return it->second;
  }
  return std::nullopt;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_bytes.size()); }

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

}  // namespace lb
