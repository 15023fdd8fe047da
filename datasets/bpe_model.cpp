#include "datasets/bpe_model.h"

#include "datasets/byte_level.h"

#include <queue>

namespace lb {
namespace {

uint64_t pair_key(int64_t left, int64_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

BpeModel::BpeModel(const TokenizerFile& file, const nlohmann::json& model) {
  using json = nlohmann::json;
  const std::string type = file.type_of(model, "model");
  if (type != "BPE") file.refuse("unsupported model type " + type + " (only BPE)");
  const json dropout = optional_member(model, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
    file.refuse("model.dropout " + dropout.dump() + " is not supported (encoding must be deterministic)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json affix = optional_member(model, key);
    if (!affix.is_null() && affix != "")
      file.refuse(std::string("model.") + key + " " + affix.dump() + " is not supported");
  }
  ignore_merges_ = file.flag(model, "ignore_merges", "model", false);
  // byte_fallback, unk_token and fuse_unk only act on a character missing from the vocabulary;
  // with all 256 byte symbols present (checked below) none ever is.

  const json& vocab_json = file.member(model, "vocab", "model.vocab");
  if (!vocab_json.is_object()) file.refuse("model.vocab must be an object of token: id");
  vocab_.reserve(vocab_json.size());
  for (const auto& [token, id] : vocab_json.items())
    vocab_[token] = file.id(id, "model.vocab[" + json(token).dump() + "]");
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(byte_symbols()[b]);
    if (it == vocab_.end())
      file.refuse("model.vocab lacks the byte-level symbol " + json(byte_symbols()[b]).dump() + " of byte " +
                  std::to_string(b) + "; a byte-level BPE needs all 256");
    byte_id_[b] = it->second;
  }

  const json& merges_json = file.member(model, "merges", "model.merges");
  if (!merges_json.is_array()) file.refuse("model.merges must be an array");
  merges_.reserve(merges_json.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges_json.size(); ++rank) {
    const json& m = merges_json[rank];
    auto name = [&] { return "model.merges[" + std::to_string(rank) + "]"; };
    if (m.is_string()) {  // "a b": tokens never hold a space, it is 'Ġ' in this alphabet
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        file.refuse(name() + " " + m.dump() + " is not two tokens separated by one space");
      left.assign(s, 0, space), right.assign(s, space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      file.refuse(name() + " must be \"a b\" or [\"a\", \"b\"]");
    }
    auto id_of = [&](const std::string& token) {
      const auto it = vocab_.find(token);
      if (it == vocab_.end()) file.refuse(name() + " " + m.dump() + ": " + json(token).dump() + " is not in model.vocab");
      return it->second;
    };
    const int64_t l = id_of(left), r = id_of(right), merged = id_of(left + right);
    const auto [it, fresh] = merges_.emplace(pair_key(l, r), Merge{int32_t(rank), merged});
    if (!fresh)
      file.refuse(name() + " " + m.dump() + " repeats model.merges[" + std::to_string(it->second.rank) + "]");
  }
}

// Lowest rank first, the leftmost among equal ranks: the order HF merges in.
std::vector<int64_t> BpeModel::merge_word(const std::string& word) const {
  if (ignore_merges_) {  // a word that is itself a token is taken whole
    std::string symbols;
    for (unsigned char b : word) symbols += byte_symbols()[b];
    const auto it = vocab_.find(symbols);
    if (it != vocab_.end()) return {it->second};
  }
  // Symbols form a linked list over their first byte's position; a merge keeps the left one.
  struct Symbol {
    int64_t id;  // -1 once merged into its left neighbour
    int prev, next;
  };
  const int n = static_cast<int>(word.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i)
    symbols[i] = {byte_id_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};

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
    const auto it = merges_.find(pair_key(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, symbols[pos].id, symbols[next].id});
  };
  for (int i = 0; i + 1 < n; ++i) offer(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& s = symbols[c.pos];
    if (s.id != c.left || s.next < 0 || symbols[s.next].id != c.right) continue;
    Symbol& gone = symbols[s.next];
    s.id = merges_.at(pair_key(c.left, c.right)).id;
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

void BpeModel::encode_word(const std::string& word, std::vector<int64_t>& ids) const {
  const bool cacheable = word.size() <= kCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheEntries) cache_.emplace(word, std::move(merged));
  }
}

}  // namespace lb
