#pragma once
// GSM8K, the dataset side of `layoutbench gsm8k`: the JSONL loader, k-shot prompts, stop strings,
// answer extraction and scoring, and the accuracy with its 95% interval. Generation is elsewhere;
// it takes few_shot_prompt() and gsm8k_stop_strings(), and hands its text to is_correct().
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lb {

struct Gsm8kItem {
  std::string question;
  std::string solution;  // the file's "answer" field: reasoning lines, then "#### <answer>"
  std::string answer;    // reference_answer(solution): "1080" for "#### 1,080"
  int line = 0;          // 1-based line in the file, so a result can be traced to its source
};

// A line the loader refused. message() is the text strict mode throws: "path:line: problem".
struct LoadError {
  std::string path;
  int line = 0;
  std::string problem;
  std::string message() const;
};
using LoadErrors = std::vector<LoadError>;

struct Gsm8kData {
  std::string path;
  std::vector<Gsm8kItem> items;  // in file order
  LoadErrors skipped;            // bad lines passed over (OnBadLine::Skip only), in file order
};

// Throw: the first bad line ends the load, for a file that should be clean (the default).
// Skip: bad lines go to Gsm8kData::skipped and the load goes on, so a long run over a damaged file
// still runs and can report exactly which questions it left out.
enum class OnBadLine { Throw, Skip };

// Reads JSONL, one {"question": str, "answer": str} per line; other keys are ignored, and so are
// blank lines (a trailing newline or blank separator loses nothing). A line is bad when it is not
// a JSON object, lacks either string or has an empty one, or its answer has no "####" followed by
// a number. Always an InputError, whatever `on_bad`: a file that cannot be read, one with no
// items at all, and more than `max_skipped` bad lines (by then it is the wrong file, not a few
// damaged lines). Every message names the file and the line.
Gsm8kData load_gsm8k(const std::string& path, OnBadLine on_bad = OnBadLine::Throw, int max_skipped = 100);

// k shots for the prompt. Without a seed, the first k items: the usual fixed k-shot prompt. With
// one, k distinct items drawn from the whole set, in draw order; the same seed gives the same
// shots on every platform (the standard fixes mt19937_64's sequence, and the draw uses nothing
// implementation-defined). InputError when k is negative or larger than the set.
std::vector<Gsm8kItem> select_shots(const std::vector<Gsm8kItem>& train, int k,
                                    std::optional<uint64_t> seed = std::nullopt);

// "Question: <q>\nAnswer: <solution>\n\n" for each shot, then "Question: <question>\nAnswer:".
// Solutions go in verbatim, "<<48/2=24>>" calculator notes and "#### 72" included, so the model
// learns to end its answer with "#### N", and to start the next example, where it is cut off.
std::string few_shot_prompt(const std::vector<Gsm8kItem>& shots, const std::string& question);

// Where generation stops. "Question:": the model has finished its answer and begins inventing the
// next example of the few-shot pattern (the solutions themselves never contain it). "\n\n\n":
// examples are separated by one blank line and solutions hold at most one, so three newlines is
// rambling. "<|endoftext|>", "<|im_end|>", "</s>": end-of-text tokens of Qwen and Llama-style
// vocabularies, for a decode that writes special tokens out as text.
std::vector<std::string> gsm8k_stop_strings();

// `generated` up to the earliest stop string, or whole when it has none. `generated` is the text
// after the prompt's final "Answer:", so a cut can only fall after the answer begins; whatever
// follows belongs to an example the model made up and must not be scored. A generator that
// honours the stop strings gives the same text, so scoring does not depend on whether it did.
std::string cut_at_stop(const std::string& generated);

// The text after the last "####", trimmed, with ',' and '$' removed; nullopt when there is no
// "####" or nothing after it.
std::optional<std::string> reference_answer(const std::string& solution);

// The model's answer: the last number in cut_at_stop(generated), with ',' and '$' removed, digits
// otherwise as written ("3.50" stays "3.50"; answers_equal compares values). A number is
//   - a run of digits, wherever it stands ("3rd" -> 3, "<<4*2=8>>8" -> 4, 2, 8, 8);
//   - with thousands commas only in 3-digit groups after a run of at most 3 ("1,000" -> 1000,
//     "1,234,567" -> 1234567); other commas separate numbers ("1,2,3" -> 3, "1234,567" -> 567);
//   - with a decimal part when a '.' is followed by a digit ("3.50"); a sentence's full stop is
//     not part of it ("72." -> 72), and a bare ".5" is 0.5;
//   - negative when a '-' stands right before it, or before its '$' ("-$5"), and is not itself
//     preceded by a letter or digit: "-7" and "= -7" are negative, "5-3" and "x-3" are not.
// nullopt when there is no number.
std::optional<std::string> extract_answer(const std::string& generated);

// The exact decimal value of a number as a canonical string: ',' and '$' dropped, leading zeros,
// trailing fraction zeros, a bare '.', a '+' and the sign of zero removed ("$1,000.50" -> "1000.5",
// "-0.0" -> "0", "+007" -> "7"). No exponents or fractions: "1e3" and "3/4" are not numbers here.
std::optional<std::string> canonical_number(const std::string& text);

// Equal values when both are numbers (compared as exact decimals, never through a double, so
// "3.50" == "3.5" and large integers do not round together); otherwise equal trimmed text.
bool answers_equal(const std::string& a, const std::string& b);

// extract_answer(generated) equals `reference` (an item's answer).
bool is_correct(const std::string& generated, const std::string& reference);

// Fraction correct with its 95% Wilson score interval, which unlike the normal approximation stays
// inside [0, 1] and keeps its coverage near 0% and 100% and on small sets. total == 0 gives
// value 0 and the uninformative [0, 1].
struct Accuracy {
  int correct = 0, total = 0;
  double value = 0, low95 = 0, high95 = 1;
};
Accuracy accuracy(int correct, int total);

// "81/263 = 30.80% (95% CI 25.53-36.62%)"
std::string to_string(const Accuracy& a);

}  // namespace lb
