#include "datasets/gsm8k.h"

#include "harness/runtime/errors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <stdexcept>

namespace lb {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && is_space(s[begin])) ++begin;
  while (end > begin && is_space(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

std::string without_commas_and_dollars(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != ',' && c != '$') out += c;
  return out;
}

// Long values would bury the line number in an error message.
std::string quoted_excerpt(const std::string& s) {
  return "'" + (s.size() > 40 ? s.substr(0, 40) + "..." : s) + "'";
}

// nlohmann's message says "line 1" of the one-line text it was given; keep only the column onwards.
std::string json_problem(const nlohmann::json::exception& e) {
  const std::string what = e.what();
  const size_t column = what.find("column");
  return "malformed JSON (" + (column == std::string::npos ? what : what.substr(column)) + ")";
}

std::string string_field(const nlohmann::json& j, const char* key, std::string& problem) {
  const auto it = j.find(key);
  if (it == j.end()) {
    problem = std::string("missing \"") + key + "\"";
  } else if (!it->is_string()) {
    problem = std::string("\"") + key + "\" is " + it->type_name() + ", not a string";
  } else if (it->get_ref<const std::string&>().empty()) {
    problem = std::string("\"") + key + "\" is empty";
  } else {
    return it->get<std::string>();
  }
  return {};
}

// Fills `item` from one JSONL line; returns what is wrong with the line, empty when nothing is.
std::string parse_line(const std::string& text, Gsm8kItem& item) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
    return json_problem(e);
  }
  if (!j.is_object()) return std::string("expected a JSON object, found ") + j.type_name();
  std::string problem;
  item.question = string_field(j, "question", problem);
  if (!problem.empty()) return problem;
  item.solution = string_field(j, "answer", problem);
  if (!problem.empty()) return problem;
  const size_t mark = item.solution.rfind("####");
  if (mark == std::string::npos) return "\"answer\" has no \"####\" line giving the final answer";
  const std::optional<std::string> answer = reference_answer(item.solution);
  if (!answer) return "nothing after \"####\" in \"answer\"";
  if (!canonical_number(*answer))
    return "the final answer after \"####\" is " + quoted_excerpt(trim(item.solution.substr(mark + 4))) +
           ", not a number";
  item.answer = *answer;
  return {};
}

bool is_blank(const std::string& s) { return std::all_of(s.begin(), s.end(), is_space); }

}  // namespace

std::string LoadError::message() const { return path + ":" + std::to_string(line) + ": " + problem; }

Gsm8kData load_gsm8k(const std::string& path, OnBadLine on_bad, int max_skipped) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the GSM8K file");
  Gsm8kData data;
  data.path = path;
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (is_blank(text)) continue;
    Gsm8kItem item;
    item.line = line;
    const std::string problem = parse_line(text, item);
    if (problem.empty()) {
      data.items.push_back(std::move(item));
      continue;
    }
    const LoadError error{path, line, problem};
    if (on_bad == OnBadLine::Throw) throw InputError(error.message());
    data.skipped.push_back(error);
    if (int(data.skipped.size()) > max_skipped)
      throw InputError(path + ":" + std::to_string(line) + ": more than " + std::to_string(max_skipped) +
                       " bad lines, giving up; the first was " + data.skipped.front().message());
  }
  if (in.bad()) throw InputError(path + ":" + std::to_string(line + 1) + ": read error");
  if (data.items.empty()) {
    const std::string where = path + ":" + std::to_string(std::max(line, 1)) + ": ";
    if (line == 0) throw InputError(where + "empty file, no GSM8K items");
    if (data.skipped.empty()) throw InputError(where + "no GSM8K items, only blank lines");
    throw InputError(where + "no GSM8K items, all " + std::to_string(data.skipped.size()) +
                     " non-blank lines are bad; the first was " + data.skipped.front().message());
  }
  return data;
}

std::vector<Gsm8kItem> select_shots(const std::vector<Gsm8kItem>& train, int k, std::optional<uint64_t> seed) {
  if (k < 0 || size_t(k) > train.size())
    throw InputError("k-shot prompt: asked for " + std::to_string(k) + " shots from a set of " +
                     std::to_string(train.size()) + " items");
  if (!seed) return {train.begin(), train.begin() + k};
  // A partial Fisher-Yates shuffle driven by raw mt19937_64 output: std::shuffle and
  // std::uniform_int_distribution differ between standard libraries. The modulo's bias is below
  // n / 2^64, far from anything measurable.
  std::mt19937_64 rng(*seed);
  std::vector<size_t> order(train.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::vector<Gsm8kItem> shots;
  for (size_t i = 0; i < size_t(k); ++i) {
    std::swap(order[i], order[i + size_t(rng() % (order.size() - i))]);
    shots.push_back(train[order[i]]);
  }
  return shots;
}

std::string few_shot_prompt(const std::vector<Gsm8kItem>& shots, const std::string& question) {
  std::string prompt;
  for (const Gsm8kItem& shot : shots) prompt += "Question: " + shot.question + "\nAnswer: " + shot.solution + "\n\n";
  return prompt + "Question: " + question + "\nAnswer:";
}

std::vector<std::string> gsm8k_stop_strings() {
  return {"Question:", "\n\n\n", "<|endoftext|>", "<|im_end|>", "</s>"};
}

std::string cut_at_stop(const std::string& generated) {
  size_t cut = generated.size();
  for (const std::string& stop : gsm8k_stop_strings()) cut = std::min(cut, generated.find(stop));
  return generated.substr(0, cut);
}

std::optional<std::string> reference_answer(const std::string& solution) {
  const size_t mark = solution.rfind("####");
  if (mark == std::string::npos) return std::nullopt;
  std::string answer = without_commas_and_dollars(trim(solution.substr(mark + 4)));
  if (answer.empty()) return std::nullopt;
  return answer;
}

std::optional<std::string> extract_answer(const std::string& generated) {
  const std::string t = cut_at_stop(generated);
  const long n = long(t.size());
  // Out-of-range reads give '\0', which is neither digit nor letter: no bounds checks below.
  auto at = [&](long i) { return i >= 0 && i < n ? t[size_t(i)] : '\0'; };
  std::optional<std::string> last;
  long i = 0;
  while (i < n) {
    if (!is_digit(t[size_t(i)])) {
      ++i;
      continue;
    }
    const long start = i;
    std::string number;
    while (is_digit(at(i))) number += t[size_t(i++)];
    const bool bare_fraction = at(start - 1) == '.' && !is_digit(at(start - 2));
    if (bare_fraction) {
      number = "0." + number;
    } else {
      if (number.size() <= 3)
        while (at(i) == ',' && is_digit(at(i + 1)) && is_digit(at(i + 2)) && is_digit(at(i + 3)) && !is_digit(at(i + 4))) {
          number.append(t, size_t(i + 1), 3);
          i += 4;
        }
      if (at(i) == '.' && is_digit(at(i + 1))) {
        number += '.';
        ++i;
        while (is_digit(at(i))) number += t[size_t(i++)];
      }
    }
    long sign = start - (bare_fraction ? 2 : 1);
    if (at(sign) == '$') --sign;
    if (at(sign) == '-' && !is_alnum(at(sign - 1))) number = "-" + number;
    last = number;
  }
  return last;
}

std::optional<std::string> canonical_number(const std::string& text) {
  const std::string t = without_commas_and_dollars(trim(text));
  size_t i = 0;
  bool negative = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  std::string whole, fraction;
  bool dot = false;
  for (; i < t.size(); ++i) {
    if (is_digit(t[i]))
      (dot ? fraction : whole) += t[i];
    else if (t[i] == '.' && !dot)
      dot = true;
    else
      return std::nullopt;
  }
  if (whole.empty() && fraction.empty()) return std::nullopt;
  whole.erase(0, whole.find_first_not_of('0'));
  fraction.erase(fraction.find_last_not_of('0') + 1);  // npos + 1 == 0: all zeros go
  std::string out = whole.empty() ? "0" : whole;
  if (!fraction.empty()) out += "." + fraction;
  if (negative && out != "0") out = "-" + out;
  return out;
}

bool answers_equal(const std::string& a, const std::string& b) {
  const std::optional<std::string> x = canonical_number(a), y = canonical_number(b);
  if (x && y) return *x == *y;
  return trim(a) == trim(b);
}

bool is_correct(const std::string& generated, const std::string& reference) {
  const std::optional<std::string> answer = extract_answer(generated);
  return answer && answers_equal(*answer, reference);
}

Accuracy accuracy(int correct, int total) {
  if (total < 0 || correct < 0 || correct > total)
    throw std::invalid_argument("accuracy: " + std::to_string(correct) + " correct of " + std::to_string(total));
  Accuracy a;
  a.correct = correct;
  a.total = total;
  if (total == 0) return a;
  const double z = 1.959963984540054;  // the two-sided 95% point of the standard normal
  const double n = total, p = double(correct) / n, z2 = z * z;
  const double denominator = 1 + z2 / n;
  const double center = (p + z2 / (2 * n)) / denominator;
  const double half = z * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator;
  a.value = p;
  // At 0 or all correct the bound is exactly 0 or 1; rounding would leave it a hair off.
  a.low95 = correct == 0 ? 0.0 : std::max(0.0, center - half);
  a.high95 = correct == total ? 1.0 : std::min(1.0, center + half);
  return a;
}

std::string to_string(const Accuracy& a) {
  char text[128];
  std::snprintf(text, sizeof text, "%d/%d = %.2f%% (95%% CI %.2f-%.2f%%)", a.correct, a.total, 100 * a.value,
                100 * a.low95, 100 * a.high95);
  return text;
}

}  // namespace lb
