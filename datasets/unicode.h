#pragma once
// What the tokenizer takes from ICU, behind a header without ICU: normal forms, the two character
// classes HF's added tokens test, and regex splitting as HF runs it through Oniguruma. Built
// without ICU, every function here throws std::logic_error; Tokenizer::from_file refuses first.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace lb::unicode {

// Whether this build has ICU.
bool available();

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize(const std::string& utf8, NormalForm form);

// Unicode White_Space: Rust's char::is_whitespace and regex \s.
bool is_white_space(char32_t c);
// Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(char32_t c);

// A stretch [begin, end) of UTF-8 bytes, and whether the pattern matched it.
struct Span {
  size_t begin, end;
  bool match;
};

// A compiled pattern; immutable, so one Regex serves every thread.
class Regex {
 public:
  // A regex, or with `literal` the text itself. Throws std::invalid_argument with ICU's reason
  // and the offset where the pattern stops compiling.
  Regex(const std::string& pattern, bool literal);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // One matcher, reused over many texts: ICU's matchers are not thread-safe, so each thread
  // (each encode call) makes its own, and splitting many pieces through one saves making one per piece.
  class Scanner {
   public:
    // `text` cut at the pattern's matches, every byte in exactly one span, in order, as HF's
    // find_matches cuts it: an empty text is one empty unmatched span, and an empty match right
    // after a match is skipped, as Oniguruma's find_iter skips it.
    std::vector<Span> find_matches(const std::string& text);
    Scanner(Scanner&&) noexcept;
    ~Scanner();

   private:
    friend class Regex;
    struct State;
    explicit Scanner(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
  };
  Scanner scanner() const;

 private:
  struct Pattern;
  std::unique_ptr<Pattern> pattern_;
};

}  // namespace lb::unicode
