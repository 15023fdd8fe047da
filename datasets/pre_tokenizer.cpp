#include "datasets/pre_tokenizer.h"

#include <algorithm>
#include <stdexcept>

namespace lb {
namespace {

using Behavior = PreTokenizer::Behavior;
using Range = std::pair<size_t, size_t>;

// HF's ByteLevel regex (GPT-2's), used when the ByteLevel step splits by itself.
const char* const kGpt2Split = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::optional<Behavior> behavior_named(const std::string& name) {
  if (name == "Removed") return Behavior::Removed;
  if (name == "Isolated") return Behavior::Isolated;
  if (name == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::MergedWithNext;
  if (name == "Contiguous") return Behavior::Contiguous;
  return std::nullopt;
}

// The pieces a split keeps, from the matched and unmatched spans of one piece: HF's
// NormalizedString::split, step for step. Empty pieces are left for the caller to drop.
std::vector<Range> pieces_kept(const std::vector<unicode::Span>& spans, Behavior behavior) {
  std::vector<Range> kept;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (const auto& s : spans) kept.push_back({s.begin, s.end});
      break;
    case Behavior::Removed:
      for (const auto& s : spans)
        if (!s.match) kept.push_back({s.begin, s.end});
      break;
    case Behavior::Contiguous:  // runs of matches become one piece
      for (const auto& s : spans) {
        if (s.match == previous_match && !kept.empty()) kept.back().second = s.end;
        else kept.push_back({s.begin, s.end});
        previous_match = s.match;
      }
      break;
    case Behavior::MergedWithPrevious:  // a match joins the piece before it
      for (const auto& s : spans) {
        if (s.match && !previous_match && !kept.empty()) kept.back().second = s.end;
        else kept.push_back({s.begin, s.end});
        previous_match = s.match;
      }
      break;
    case Behavior::MergedWithNext:  // a match joins the piece after it: the same, walked backwards
      for (auto s = spans.rbegin(); s != spans.rend(); ++s) {
        if (s->match && !previous_match && !kept.empty()) kept.back().first = s->begin;
        else kept.push_back({s->begin, s->end});
        previous_match = s->match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  return kept;
}

}  // namespace

PreTokenizer::PreTokenizer(const TokenizerFile& file, const nlohmann::json& part) {
  if (part.is_null()) file.refuse("pre_tokenizer is null; a byte-level BPE needs a ByteLevel pre-tokenizer");
  read(file, part, "pre_tokenizer");
  if (!byte_level_)
    file.refuse("pre_tokenizer has no ByteLevel step: not a byte-level BPE, which is all this tokenizer reads");
}

void PreTokenizer::add_split(const std::string& pattern, bool literal, Behavior behavior, bool invert) {
  Step step;
  step.regex.emplace(pattern, literal);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void PreTokenizer::read(const TokenizerFile& file, const nlohmann::json& part, const std::string& name) {
  const std::string type = file.type_of(part, name);
  if (byte_level_ && type != "Sequence")
    file.refuse(name + " (" + type + ") comes after the ByteLevel step, which must be the last");
  if (type == "Sequence") {
    const nlohmann::json& steps = file.member(part, "pretokenizers", name + ".pretokenizers");
    if (!steps.is_array()) file.refuse(name + ".pretokenizers must be an array");
    for (size_t i = 0; i < steps.size(); ++i) read(file, steps[i], name + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "Split") {
    read_split(file, part, name);
  } else if (type == "Digits") {
    // HF splits at char::is_numeric, which is \p{N}: each digit alone, or runs kept together.
    add_split(file.flag(part, "individual_digits", name, false) ? R"(\p{N})" : R"(\p{N}+)", false, Behavior::Isolated,
              false);
  } else if (type == "ByteLevel") {
    if (file.flag(part, "add_prefix_space", name, true)) {
      steps_.emplace_back();
      steps_.back().prefix_space = true;
    }
    if (file.flag(part, "use_regex", name, true)) add_split(kGpt2Split, false, Behavior::Isolated, false);
    byte_level_ = true;
  } else {
    file.refuse("unsupported " + name + " type " + type + " (supported: Sequence, Split, Digits, ByteLevel)");
  }
}

void PreTokenizer::read_split(const TokenizerFile& file, const nlohmann::json& part, const std::string& name) {
  const nlohmann::json& pattern = file.member(part, "pattern", name + ".pattern");
  const bool regex = pattern.is_object() && pattern.size() == 1 && pattern.contains("Regex");
  const bool literal = pattern.is_object() && pattern.size() == 1 && pattern.contains("String");
  if (!regex && !literal) file.refuse(name + ".pattern must be {\"Regex\": ...} or {\"String\": ...}");
  const std::string key = name + ".pattern." + (regex ? "Regex" : "String");
  const nlohmann::json& text = pattern.begin().value();
  if (!text.is_string()) file.refuse(key + " must be a string");
  // HF matches nothing with an empty String but cuts by characters where it means bytes: refused.
  if (text.get_ref<const std::string&>().empty()) file.refuse(key + " is empty");

  const nlohmann::json& behavior = file.member(part, "behavior", name + ".behavior");
  const auto b = behavior.is_string() ? behavior_named(behavior.get<std::string>()) : std::nullopt;
  if (!b)
    file.refuse(name + ".behavior " + behavior.dump() +
                " is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
  try {
    // HF compiles with Oniguruma. ICU agrees with it on what tokenizer patterns use: \p{..} are
    // general categories in both, \s is White_Space in both (U+000B and U+0085 included, U+001C..
    // U+001F not), and the tiny fixture's vertical-tab test pins that down.
    add_split(text.get<std::string>(), literal, *b, file.flag(part, "invert", name, false));
  } catch (const std::invalid_argument& e) {
    file.refuse(key + " " + text.dump() + " does not compile with ICU (" + e.what() + ")");
  }
}

std::vector<std::string> PreTokenizer::split(const std::string& text) const {
  std::vector<std::string> pieces;
  if (!text.empty()) pieces.push_back(text);
  for (const Step& step : steps_) {
    if (step.prefix_space) {
      for (std::string& piece : pieces)
        if (piece[0] != ' ') piece.insert(0, 1, ' ');
      continue;
    }
    std::vector<std::string> next;
    unicode::Regex::Scanner scanner = step.regex->scanner();
    for (const std::string& piece : pieces) {
      std::vector<unicode::Span> spans = scanner.find_matches(piece);
      if (step.invert)
        for (auto& s : spans) s.match = !s.match;
      for (const auto& [begin, end] : pieces_kept(spans, step.behavior))
        if (end > begin) next.push_back(piece.substr(begin, end - begin));  // HF drops empty pieces
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace lb
