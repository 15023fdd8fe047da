#include "datasets/byte_level.h"

#include "datasets/utf8.h"

#include <unordered_map>

namespace lb {
namespace {

std::array<char32_t, 256> byte_code_points() {
  std::array<char32_t, 256> cps{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cps[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return cps;
}

}  // namespace

const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> symbols = [] {
    std::array<std::string, 256> s;
    const auto cps = byte_code_points();
    for (int b = 0; b < 256; ++b) append_utf8(s[b], cps[b]);
    return s;
  }();
  return symbols;
}

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

}  // namespace lb
