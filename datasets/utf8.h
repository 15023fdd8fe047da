#pragma once
// UTF-8 as the tokenizer reads and writes it: one code point at a time, well-formedness checked.
#include <cstddef>
#include <string>

namespace lb {

void append_utf8(std::string& out, char32_t cp);

// The length of the well-formed UTF-8 sequence at s[i] and its code point, or 0 when there is
// none there (overlong forms, surrogates and values past U+10FFFF are not well-formed).
size_t next_code_point(const std::string& s, size_t i, char32_t* cp);

// The code point that ends at s[end - 1] and its length; `s` must be well-formed and end > 0.
size_t previous_code_point(const std::string& s, size_t end, char32_t* cp);

// The offset of the first byte that does not start a well-formed sequence, or s.size().
size_t first_invalid_utf8(const std::string& s);

}  // namespace lb
