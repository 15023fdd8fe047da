// Byte-level BPE as HF tokenizers runs it for a Qwen2/Qwen3 tokenizer.json (see tokenizer.h).
#include "datasets/tokenizer.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"

#include <nlohmann/json.hpp>

#ifdef LB_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>
#endif

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

namespace lb {
namespace {

using json = nlohmann::json;

// ---- UTF-8 ----

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The length of the well-formed UTF-8 sequence at s[i] and its code point, or 0 when there is
// none there (overlong forms, surrogates and values past U+10FFFF are not well-formed).
size_t next_code_point(const std::string& s, size_t i, char32_t* cp) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  char32_t value = 0, least = 0;
  if (lead < 0x80) {
    *cp = lead;
    return 1;
  } else if ((lead & 0xE0) == 0xC0) {
    n = 2, value = lead & 0x1F, least = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    n = 3, value = lead & 0x0F, least = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    n = 4, value = lead & 0x07, least = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xC0) != 0x80) return 0;
    value = (value << 6) | (next & 0x3F);
  }
  if (value < least || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return n;
}

// ---- GPT-2's byte-level alphabet ----

// Every byte gets a printable character so that no token holds a space or a control character:
// the printable Latin-1 bytes stand for themselves, the other 68 (controls, space, DEL, NBSP,
// soft hyphen) take U+0100, U+0101, ... in byte order (so ' ' is 'Ġ' and '\n' is 'Ċ').
std::array<char32_t, 256> byte_code_points() {
  std::array<char32_t, 256> cps{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cps[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return cps;
}

const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> symbols = [] {
    std::array<std::string, 256> s;
    const auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) append_utf8(s[b], cps[b]);
    return s;
  }();
  return symbols;
}

// The bytes a vocabulary token stands for. HF's ByteLevel decoder keeps a token that holds a
// character outside the alphabet as its own UTF-8 text; so do we.
std::string token_bytes(const std::string& token) {
  static const std::unordered_map<char32_t, char> byte_of = [] {
    std::unordered_map<char32_t, char> m;
    const auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) m[cps[b]] = static_cast<char>(b);
    return m;
  }();
  std::string bytes;
  for (size_t i = 0; i < token.size();) {
    char32_t cp = 0;
    const size_t n = next_code_point(token, i, &cp);
    const auto it = byte_of.find(cp);
    if (n == 0 || it == byte_of.end()) return token;
    bytes += it->second;
    i += n;
  }
  return bytes;
}

// ---- tokenizer.json ----

[[noreturn]] void refuse(const std::string& path, const std::string& what) { throw InputError(path + ": " + what); }

json read_json(const std::string& path) {
  if (!is_regular_file(path)) refuse(path, "no such tokenizer file");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) refuse(path, "cannot read the tokenizer file");
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
    refuse(path, std::string("not valid JSON: ") + e.what());
  }
}

// obj[key], which must exist; `name` is the dotted key the error message shows.
const json& member(const std::string& path, const json& obj, const char* key, const std::string& name) {
  if (!obj.is_object() || !obj.contains(key)) refuse(path, "missing key " + name);
  return obj.at(key);
}

// obj[key] or null when the file leaves it out, as HF reads an absent optional part.
json optional_member(const json& obj, const char* key) { return obj.contains(key) ? obj.at(key) : json(); }

std::string type_of(const std::string& path, const json& part, const std::string& name) {
  const json& type = member(path, part, "type", name + ".type");
  if (!type.is_string()) refuse(path, name + ".type must be a string");
  return type.get<std::string>();
}

bool flag(const std::string& path, const json& part, const char* key, const std::string& name, bool absent) {
  const json value = optional_member(part, key);
  if (value.is_null()) return absent;
  if (!value.is_boolean()) refuse(path, name + "." + key + " must be true or false");
  return value.get<bool>();
}

// The one pre-tokenizer this tokenizer runs: Sequence[Split(Regex, Isolated), ByteLevel without
// its own regex or prefix space]. Returns the Split regex.
std::string split_regex(const std::string& path, const json& pre) {
  const std::string shape = "only Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)] is supported";
  if (pre.is_null()) refuse(path, "pre_tokenizer is null; " + shape);
  const std::string type = type_of(path, pre, "pre_tokenizer");
  if (type != "Sequence") refuse(path, "unsupported pre_tokenizer type " + type + "; " + shape);
  const json& steps = member(path, pre, "pretokenizers", "pre_tokenizer.pretokenizers");
  if (!steps.is_array() || steps.size() != 2) refuse(path, "pre_tokenizer.pretokenizers: " + shape);

  const json& split = steps[0];
  const std::string split_name = "pre_tokenizer.pretokenizers[0]";
  if (type_of(path, split, split_name) != "Split") refuse(path, split_name + " is not a Split; " + shape);
  const json& pattern = member(path, split, "pattern", split_name + ".pattern");
  if (!pattern.is_object() || !pattern.contains("Regex") || !pattern.at("Regex").is_string())
    refuse(path, split_name + ".pattern must be {\"Regex\": ...}; plain String patterns are not supported");
  const json& behavior = member(path, split, "behavior", split_name + ".behavior");
  if (behavior != "Isolated")
    refuse(path, split_name + ".behavior " + behavior.dump() + " is not supported (only Isolated)");
  if (flag(path, split, "invert", split_name, false)) refuse(path, split_name + ".invert true is not supported");

  const json& bytes = steps[1];
  const std::string bytes_name = "pre_tokenizer.pretokenizers[1]";
  if (type_of(path, bytes, bytes_name) != "ByteLevel") refuse(path, bytes_name + " is not a ByteLevel; " + shape);
  if (flag(path, bytes, "add_prefix_space", bytes_name, true))
    refuse(path, bytes_name + ".add_prefix_space true is not supported");
  if (flag(path, bytes, "use_regex", bytes_name, true))
    refuse(path, bytes_name + ".use_regex true is not supported (the Split before it does the splitting)");
  return pattern.at("Regex").get<std::string>();
}

// Parts that would change the ids if honored: refused unless absent, null or harmless.
void check_unsupported_parts(const std::string& path, const json& file) {
  for (const char* key : {"truncation", "padding"}) {
    if (!optional_member(file, key).is_null()) refuse(path, std::string(key) + " is set; this tokenizer never truncates or pads");
  }
  const json post = optional_member(file, "post_processor");
  if (!post.is_null()) {
    const std::string type = type_of(path, post, "post_processor");
    // ByteLevel post-processing only moves offsets; every other kind adds tokens.
    if (type != "ByteLevel") refuse(path, "unsupported post_processor type " + type + " (it would add tokens)");
  }
  const json decoder = optional_member(file, "decoder");
  if (decoder.is_null()) refuse(path, "decoder is null; only a ByteLevel decoder is supported");
  const std::string type = type_of(path, decoder, "decoder");
  if (type != "ByteLevel") refuse(path, "unsupported decoder type " + type + " (only ByteLevel)");
}

bool wants_nfc(const std::string& path, const json& file) {
  const json normalizer = optional_member(file, "normalizer");
  if (normalizer.is_null()) return false;
  const std::string type = type_of(path, normalizer, "normalizer");
  if (type != "NFC") refuse(path, "unsupported normalizer type " + type + " (only NFC or none)");
  return true;
}

struct Merge {
  int32_t rank;
  int64_t id;  // of the merged token
};

uint64_t pair_key(int64_t left, int64_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
}

struct AddedToken {
  std::string content;
  int64_t id;
};

}  // namespace

struct Tokenizer::Impl {
  std::string path;
  std::unordered_map<std::string, int64_t> vocab;  // token text as in the file ("Ġthe")
  std::unordered_map<uint64_t, Merge> merges;       // by pair_key(left id, right id)
  std::array<int64_t, 256> byte_id{};               // the single-byte tokens BPE starts from
  bool ignore_merges = false;
  bool nfc = false;
  // Longest first, so that the first match at a position is the longest one there, as HF's
  // leftmost-longest search finds it.
  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> added_by_first_byte;  // indices into `added`
  std::unordered_map<std::string, int64_t> added_ids;
  std::vector<std::string> id_bytes;  // what decode writes for each id
  std::vector<bool> id_known;
#ifdef LB_HAVE_ICU
  std::unique_ptr<icu::RegexPattern> split;
  const icu::Normalizer2* nfc_form = nullptr;  // ICU's singleton, not owned
#endif

  // BPE words repeat (" the", " of"); HF keeps a bounded cache of short ones, so do we.
  static constexpr size_t kCacheEntries = 10000;
  static constexpr size_t kCachedWordBytes = 256;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;

  void load_model(const json& model);
  void load_added_tokens(const json& tokens);
  void encode_stretch(const std::string& text, size_t begin, size_t end, std::vector<int64_t>& ids) const;
  void encode_word(const std::string& word, std::vector<int64_t>& ids) const;
  std::vector<int64_t> merge_word(const std::string& word) const;
  void set_decoding(int64_t id, std::string bytes);
};

void Tokenizer::Impl::set_decoding(int64_t id, std::string bytes) {
  if (id >= static_cast<int64_t>(id_bytes.size())) {
    id_bytes.resize(id + 1);
    id_known.resize(id + 1, false);
  }
  id_bytes[id] = std::move(bytes);
  id_known[id] = true;
}

void Tokenizer::Impl::load_model(const json& model) {
  const std::string type = type_of(path, model, "model");
  if (type != "BPE") refuse(path, "unsupported model type " + type + " (only BPE)");
  const json dropout = optional_member(model, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
    refuse(path, "model.dropout " + dropout.dump() + " is not supported (encoding must be deterministic)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json affix = optional_member(model, key);
    if (!affix.is_null() && affix != "") refuse(path, std::string("model.") + key + " " + affix.dump() + " is not supported");
  }
  ignore_merges = flag(path, model, "ignore_merges", "model", false);
  // byte_fallback, unk_token and fuse_unk only act on a character missing from the vocabulary;
  // with all 256 byte symbols present (checked below) none ever is.

  const json& vocab_json = member(path, model, "vocab", "model.vocab");
  if (!vocab_json.is_object()) refuse(path, "model.vocab must be an object of token: id");
  for (const auto& [token, id] : vocab_json.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      refuse(path, "model.vocab[" + json(token).dump() + "] must be an id in [0, 2^31)");
    vocab[token] = id.get<int64_t>();
    set_decoding(id.get<int64_t>(), token_bytes(token));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab.find(byte_symbols()[b]);
    if (it == vocab.end())
      refuse(path, "model.vocab lacks the byte-level symbol " + json(byte_symbols()[b]).dump() + " of byte " +
                       std::to_string(b) + "; a byte-level BPE needs all 256");
    byte_id[b] = it->second;
  }

  const json& merges_json = member(path, model, "merges", "model.merges");
  if (!merges_json.is_array()) refuse(path, "model.merges must be an array");
  for (size_t rank = 0; rank < merges_json.size(); ++rank) {
    const json& m = merges_json[rank];
    const std::string name = "model.merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (m.is_string()) {  // "a b": tokens never hold a space, it is 'Ġ' in this alphabet
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        refuse(path, name + " " + m.dump() + " is not two tokens separated by one space");
      left = s.substr(0, space), right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      refuse(path, name + " must be \"a b\" or [\"a\", \"b\"]");
    }
    for (const std::string& token : {left, right, left + right}) {
      if (!vocab.count(token)) refuse(path, name + " " + m.dump() + ": " + json(token).dump() + " is not in model.vocab");
    }
    const auto [it, fresh] =
        merges.emplace(pair_key(vocab[left], vocab[right]), Merge{static_cast<int32_t>(rank), vocab[left + right]});
    if (!fresh) refuse(path, name + " " + m.dump() + " repeats model.merges[" + std::to_string(it->second.rank) + "]");
  }
}

void Tokenizer::Impl::load_added_tokens(const json& tokens) {
  if (tokens.is_null()) return;
  if (!tokens.is_array()) refuse(path, "added_tokens must be an array");
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string name = "added_tokens[" + std::to_string(i) + "]";
    const json& t = tokens[i];
    const json& id = member(path, t, "id", name + ".id");
    const json& content = member(path, t, "content", name + ".content");
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      refuse(path, name + ".id must be an id in [0, 2^31)");
    if (!content.is_string() || content.get<std::string>().empty()) refuse(path, name + ".content must be a non-empty string");
    // These change where a token matches (around whitespace, inside words, after NFC); Qwen's
    // tokens set none of them, and matching literally without them would differ from HF.
    for (const char* key : {"single_word", "lstrip", "rstrip", "normalized"}) {
      if (flag(path, t, key, name, false))
        refuse(path, name + " (" + content.dump() + ")." + key + " true is not supported");
    }
    added.push_back({content.get<std::string>(), id.get<int64_t>()});
    added_ids[added.back().content] = added.back().id;
    set_decoding(added.back().id, added.back().content);
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (size_t i = 0; i < added.size(); ++i)
    added_by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
}

// Lowest rank first, the leftmost among equal ranks: the order HF merges in.
std::vector<int64_t> Tokenizer::Impl::merge_word(const std::string& word) const {
  if (ignore_merges) {  // a word that is itself a token is taken whole
    std::string symbols;
    for (unsigned char b : word) symbols += byte_symbols()[b];
    const auto it = vocab.find(symbols);
    if (it != vocab.end()) return {it->second};
  }
  // Symbols form a linked list over their first byte's position; a merge keeps the left one.
  struct Symbol {
    int64_t id;  // -1 once merged into its left neighbour
    int prev, next;
  };
  const int n = static_cast<int>(word.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i) symbols[i] = {byte_id[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

  struct Candidate {
    int32_t rank;
    int pos;
    int64_t left, right;  // the ids it was found for; stale once either side has changed
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto offer = [&](int pos) {
    const int next = symbols[pos].next;
    if (next < 0) return;
    const auto it = merges.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges.end()) queue.push({it->second.rank, pos, symbols[pos].id, symbols[next].id});
  };
  for (int i = 0; i + 1 < n; ++i) offer(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& s = symbols[c.pos];
    if (s.id != c.left || s.next < 0 || symbols[s.next].id != c.right) continue;
    Symbol& gone = symbols[s.next];
    s.id = merges.at(pair_key(c.left, c.right)).id;
    s.next = gone.next;
    if (gone.next >= 0) symbols[gone.next].prev = c.pos;
    gone.id = -1;
    if (s.prev >= 0) offer(s.prev);
    offer(c.pos);
  }
  std::vector<int64_t> ids;
  for (int i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void Tokenizer::Impl::encode_word(const std::string& word, std::vector<int64_t>& ids) const {
  const bool cacheable = word.size() <= kCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    const auto it = cache.find(word);
    if (it != cache.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() < kCacheEntries) cache.emplace(word, std::move(merged));
  }
}

#ifdef LB_HAVE_ICU
namespace {

// The UTF-8 byte offset of every UTF-16 index of `u`, and of its end. Regex matches run over
// code points, so their UTF-16 bounds never split a surrogate pair.
std::vector<int32_t> utf8_offsets(const icu::UnicodeString& u) {
  std::vector<int32_t> at(u.length() + 1, 0);
  int32_t bytes = 0;
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    const int32_t units = U16_LENGTH(c);
    for (int32_t k = 0; k < units && i + k < u.length(); ++k) at[i + k] = bytes;
    bytes += U8_LENGTH(c);
    i += units;
  }
  at[u.length()] = bytes;
  return at;
}

void check_icu(UErrorCode status, const std::string& what) {
  if (U_FAILURE(status)) throw std::runtime_error(what + ": ICU error " + u_errorName(status));
}

}  // namespace

// One stretch between added tokens: NFC, split by the regex (each match and each gap between
// matches is a word, HF's "Isolated"), then BPE per word.
void Tokenizer::Impl::encode_stretch(const std::string& text, size_t begin, size_t end,
                                     std::vector<int64_t>& ids) const {
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data() + begin, end - begin));
  if (nfc) {
    u = nfc_form->normalize(u, status);
    check_icu(status, "NFC normalization");
  }
  std::string utf8;
  u.toUTF8String(utf8);
  const std::vector<int32_t> at = utf8_offsets(u);
  if (at.back() != static_cast<int32_t>(utf8.size())) throw std::logic_error("tokenizer: UTF-16 to UTF-8 offsets disagree");

  auto word = [&](int32_t from, int32_t to) { encode_word(utf8.substr(at[from], at[to] - at[from]), ids); };
  std::unique_ptr<icu::RegexMatcher> matcher(split->matcher(u, status));
  check_icu(status, "tokenizer regex");
  int32_t done = 0;
  while (matcher->find(status)) {
    const int32_t start = matcher->start(status), stop = matcher->end(status);
    if (start == stop) continue;
    if (start > done) word(done, start);
    word(start, stop);
    done = stop;
  }
  check_icu(status, "tokenizer regex");
  if (done < u.length()) word(done, u.length());
}

#else

void Tokenizer::Impl::encode_stretch(const std::string&, size_t, size_t, std::vector<int64_t>&) const {
  throw std::logic_error("tokenizer: built without ICU");  // from_file refuses first
}

#endif

Tokenizer Tokenizer::from_file(const std::string& path) {
#ifndef LB_HAVE_ICU
  refuse(path, "this build has no ICU, which the tokenizer needs for NFC and its split regex "
               "(install libicu-dev and rebuild)");
#endif
  const json file = read_json(path);
  if (!file.is_object()) refuse(path, "not a tokenizer.json (the top level is not an object)");
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->load_model(member(path, file, "model", "model"));
  impl->load_added_tokens(optional_member(file, "added_tokens"));
  impl->nfc = wants_nfc(path, file);
  const std::string pattern = split_regex(path, optional_member(file, "pre_tokenizer"));
  check_unsupported_parts(path, file);
#ifdef LB_HAVE_ICU
  UErrorCode status = U_ZERO_ERROR;
  impl->nfc_form = icu::Normalizer2::getNFCInstance(status);
  check_icu(status, "NFC normalizer");
  UParseError where{};
  // HF runs the pattern through Oniguruma. For what Qwen's pattern uses the two engines agree:
  // \p{L} and \p{N} are general categories, and \s is White_Space in both (U+000B and U+0085
  // included, U+001C..U+001F not), which the tiny fixture's vertical-tab test pins down.
  impl->split.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, where, status));
  if (U_FAILURE(status))
    refuse(path, "pre_tokenizer Split regex " + json(pattern).dump() + " does not compile with ICU (" +
                     u_errorName(status) + " at offset " + std::to_string(where.offset) + ")");
#endif
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text) const {
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const size_t n = next_code_point(text, i, &cp);
    if (n == 0) throw InputError("tokenizer input is not valid UTF-8 at byte " + std::to_string(i));
    i += n;
  }
  // Added tokens are cut out of the raw text first, the leftmost match winning; a token starts
  // with a lead byte, so a byte-wise match never starts inside a character.
  std::vector<int64_t> ids;
  size_t stretch = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (size_t k : impl_->added_by_first_byte[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = impl_->added[k];
      if (text.compare(i, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > stretch) impl_->encode_stretch(text, stretch, i, ids);
    ids.push_back(hit->id);
    i += hit->content.size();
    stretch = i;
  }
  if (stretch < text.size()) impl_->encode_stretch(text, stretch, text.size(), ids);
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
  const auto it = impl_->vocab.find(token);
  if (it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

int64_t Tokenizer::token_id(const std::string& token) const {
  const std::optional<int64_t> id = find_token(token);
  if (!id) throw InputError("token " + json(token).dump() + " is not in the vocabulary of " + impl_->path);
  return *id;
}

std::optional<int64_t> Tokenizer::eos_id() const {
  for (const char* name : {"<|endoftext|>", "<|im_end|>"}) {
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
