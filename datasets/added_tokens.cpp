#include "datasets/added_tokens.h"

#include "datasets/unicode.h"
#include "datasets/utf8.h"

#include <algorithm>

namespace lb {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  // Longest first, so that the first token found at a position is the longest one there.
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (!tokens_[i].content.empty()) by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
}

// A token starts with a lead byte, so a byte-wise match never starts inside a character.
std::vector<AddedTokenMatcher::Match> AddedTokenMatcher::leftmost_longest(const std::string& text) const {
  std::vector<Match> found;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (size_t k : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      if (text.compare(i, tokens_[k].content.size(), tokens_[k].content) == 0) {
        hit = &tokens_[k];
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    found.push_back({i, hit});
    i += hit->content.size();
  }
  return found;
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::split(const std::string& text) const {
  auto char_before = [&](size_t at) {
    char32_t c = 0;
    previous_code_point(text, at, &c);
    return c;
  };
  auto char_at = [&](size_t at) {
    char32_t c = 0;
    next_code_point(text, at, &c);
    return c;
  };
  std::vector<Segment> segments;
  size_t done = 0;
  for (const Match& m : leftmost_longest(text)) {
    const AddedToken& token = *m.token;
    size_t start = m.begin, stop = m.begin + token.content.size();
    if (token.single_word) {
      const bool word_before = start > 0 && unicode::is_word_char(char_before(start));
      const bool word_after = stop < text.size() && unicode::is_word_char(char_at(stop));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t first_space = start;
      while (first_space > 0 && unicode::is_white_space(char_before(first_space))) {
        char32_t c = 0;
        first_space -= previous_code_point(text, first_space, &c);
      }
      start = std::max(first_space, done);  // whitespace a previous token took stays its
    }
    if (token.rstrip) {
      while (stop < text.size() && unicode::is_white_space(char_at(stop))) {
        char32_t c = 0;
        stop += next_code_point(text, stop, &c);
      }
    }
    if (start > done) segments.push_back({done, start, -1});
    segments.push_back({start, stop, token.id});
    done = stop;
  }
  if (done < text.size()) segments.push_back({done, text.size(), -1});
  return segments;
}

}  // namespace lb
