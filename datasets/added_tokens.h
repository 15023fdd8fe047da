#pragma once
// Finding the "added_tokens" of a tokenizer.json in text, as HF's AddedVocabulary does: the
// leftmost match wins, the longest at that position; then a single_word token that touches a
// word character on either side is passed over, and lstrip / rstrip take the whitespace on
// their side into the token. HF runs this twice: the tokens with normalized false over the raw
// text, then those with normalized true over each normalized stretch between them, matching
// their normalized content. One AddedTokenMatcher is one of those passes.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace lb {

struct AddedToken {
  std::string content;  // what the text must hold: the normalized content for a normalized token
  int64_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false;
};

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // A stretch [begin, end) of the text: plain text (id -1) or an added token's id.
  struct Segment {
    size_t begin, end;
    int64_t id;
  };
  // `text` (well-formed UTF-8) cut at the tokens, in order. An lstrip/rstrip token's segment takes
  // its whitespace; HF lets an rstrip token's whitespace run over the start of a match found
  // before stripping, and so does this, so that the ids agree even then.
  std::vector<Segment> split(const std::string& text) const;

 private:
  struct Match {
    size_t begin;
    const AddedToken* token;
  };
  // Non-overlapping, leftmost-longest matches over the whole text, before any rule.
  std::vector<Match> leftmost_longest(const std::string& text) const;

  std::vector<AddedToken> tokens_;  // longest first
  std::array<std::vector<size_t>, 256> by_first_byte_;
};

}  // namespace lb
