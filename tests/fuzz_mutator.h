#pragma once
// A seeded random mutator for the fuzz tests: byte-level edits (flips, inserted and deleted runs,
// truncation, tokens that break parsers) and JSON-aware ones (a value replaced by one of another
// type or an extreme one, a key dropped). Deterministic per seed, so a failure is replayed by its
// seed and iteration.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace lb::test {

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }

  std::string bytes(std::string s) {
    const int edits = 1 + int(below(4));
    for (int e = 0; e < edits; ++e) {
      const size_t at = below(s.size() + 1);
      switch (below(7)) {
        case 0:
          if (!s.empty()) s[at % s.size()] ^= char(1 << below(8));
          break;
        case 1:
          if (!s.empty()) s[at % s.size()] = char(below(256));
          break;
        case 2: s.insert(at, token()); break;
        case 3: s.erase(at, below(16)); break;
        case 4: s.resize(at); break;
        case 5:
          if (!s.empty()) s.insert(at, s.substr(below(s.size()), below(32)));
          break;
        default: s.insert(at, std::string(1 + below(8), char(below(256)))); break;
      }
    }
    return s;
  }

  nlohmann::json json(nlohmann::json j) {
    const int edits = 1 + int(below(3));
    for (int e = 0; e < edits; ++e) edit(j, 0);
    return j;
  }

  // A mutated JSON as file text: invalid UTF-8 in a string becomes U+FFFD (dump() would throw);
  // raw invalid bytes reach the parsers through bytes().
  static std::string text(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  nlohmann::json value() {
    switch (below(16)) {
      case 0: return nullptr;
      case 1: return bool(below(2));
      case 2: return -int64_t(below(1000)) - 1;
      case 3: return int64_t(1) << below(63);
      case 4: return uint64_t(-1);
      case 5: return 0;
      case 6: return 1e308 * double(below(3) + 1);
      case 7: return -0.5;
      case 8: return std::string();
      case 9: return std::string(below(200), 'a' + char(below(26)));
      case 10: return "\xff\xfe";
      case 11: return nlohmann::json::array();
      case 12: return nlohmann::json::object();
      case 13: return nlohmann::json::array({1, "x", nullptr});
      case 14: return nlohmann::json::object({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}});
      default: return int64_t(below(10));
    }
  }

 private:
  std::string token() {
    static const std::vector<std::string> tokens = {
        "-1", "1e309", "18446744073709551616", "\"", "{", "}", "[", "]", ",", ":", "null", "NaN", "\\u0000",
        "\\ud800", "9223372036854775807", "0.0", "\"dtype\"", "\"shape\"", "\"data_offsets\"", "true"};
    return tokens[below(tokens.size())];
  }

  void edit(nlohmann::json& j, int depth) {
    if (depth < 6 && (j.is_object() || j.is_array()) && !j.empty() && below(4) != 0) {
      auto it = j.begin();
      std::advance(it, below(j.size()));
      if (j.is_object() && below(8) == 0) {
        j.erase(it);
        return;
      }
      edit(*it, depth + 1);
      return;
    }
    if (j.is_object() && below(3) == 0) {
      j[std::string(1, char('a' + below(26)))] = value();
      return;
    }
    j = value();
  }

  std::mt19937_64 rng_;
};

}  // namespace lb::test
