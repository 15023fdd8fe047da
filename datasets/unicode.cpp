// ICU behind datasets/unicode.h (see there).
#include "datasets/unicode.h"

#include <stdexcept>

#ifdef LB_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>
#endif

namespace lb::unicode {

#ifdef LB_HAVE_ICU

namespace {

void check(UErrorCode status, const char* what) {
  if (U_FAILURE(status)) throw std::runtime_error(std::string(what) + ": ICU error " + u_errorName(status));
}

const icu::Normalizer2& normalizer(NormalForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalForm::NFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case NormalForm::NFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case NormalForm::NFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalForm::NFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  check(status, "Unicode normalizer");
  return *n;  // ICU's singleton, never freed
}

}  // namespace

bool available() { return true; }

std::string normalize(const std::string& utf8, NormalForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), int32_t(utf8.size())));
  const icu::UnicodeString out = normalizer(form).normalize(in, status);
  check(status, "Unicode normalization");
  std::string result;
  out.toUTF8String(result);
  return result;
}

bool is_white_space(char32_t c) { return u_isUWhiteSpace(UChar32(c)); }

bool is_word_char(char32_t c) {
  const auto u = UChar32(c);
  return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL) ||
         (U_GET_GC_MASK(u) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

struct Regex::Pattern {
  std::unique_ptr<icu::RegexPattern> icu;
};

struct Regex::Scanner::State {
  std::unique_ptr<icu::RegexMatcher> matcher;
  icu::UnicodeString input;  // the matcher reads it in place
};

Regex::Regex(const std::string& pattern, bool literal) : pattern_(std::make_unique<Pattern>()) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError where{};
  pattern_->icu.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), literal ? UREGEX_LITERAL : 0,
                                                 where, status));
  if (U_FAILURE(status))
    throw std::invalid_argument(std::string(u_errorName(status)) + " at offset " + std::to_string(where.offset));
}

Regex::Scanner Regex::scanner() const {
  auto state = std::make_unique<Scanner::State>();
  UErrorCode status = U_ZERO_ERROR;
  state->matcher.reset(pattern_->icu->matcher(status));
  check(status, "regex matcher");
  return Scanner(std::move(state));
}

std::vector<Span> Regex::Scanner::find_matches(const std::string& text) {
  if (text.empty()) return {{0, 0, false}};
  State& s = *state_;
  s.input = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), int32_t(text.size())));
  s.matcher->reset(s.input);
  // ICU reports UTF-16 indices; matches come in order, so one forward walk turns them into UTF-8 offsets.
  int32_t at16 = 0;
  size_t at8 = 0;
  auto utf8_offset = [&](int32_t index) {
    while (at16 < index) {
      const UChar32 c = s.input.char32At(at16);
      at8 += U8_LENGTH(c);
      at16 += U16_LENGTH(c);
    }
    return at8;
  };
  std::vector<Span> spans;
  UErrorCode status = U_ZERO_ERROR;
  size_t done = 0;
  bool matched = false;
  while (s.matcher->find(status)) {
    const size_t start = utf8_offset(s.matcher->start(status));
    const size_t end = utf8_offset(s.matcher->end(status));
    if (start == end && matched && end == done) continue;  // ICU takes it, Oniguruma's find_iter does not
    if (start > done) spans.push_back({done, start, false});
    spans.push_back({start, end, true});
    done = end;
    matched = true;
  }
  check(status, "regex search");
  if (done < text.size()) spans.push_back({done, text.size(), false});
  return spans;
}

#else  // no ICU: Tokenizer::from_file refuses before any of this is reached

namespace {
[[noreturn]] void no_icu() { throw std::logic_error("tokenizer: built without ICU"); }
}  // namespace

struct Regex::Pattern {};
struct Regex::Scanner::State {};

bool available() { return false; }
std::string normalize(const std::string&, NormalForm) { no_icu(); }
bool is_white_space(char32_t) { no_icu(); }
bool is_word_char(char32_t) { no_icu(); }
Regex::Regex(const std::string&, bool) { no_icu(); }
Regex::Scanner Regex::scanner() const { no_icu(); }
std::vector<Span> Regex::Scanner::find_matches(const std::string&) { no_icu(); }

#endif

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;
Regex::Scanner::Scanner(std::unique_ptr<State> state) : state_(std::move(state)) {}
Regex::Scanner::Scanner(Scanner&&) noexcept = default;
Regex::Scanner::~Scanner() = default;

}  // namespace lb::unicode
