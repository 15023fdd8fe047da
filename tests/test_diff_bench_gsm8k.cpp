// `diff` rules for bench and gsm8k records: speed per layout and per decode batch, each new layout's
// ratio to its baseline; accuracy only when the intervals part, agreement, changed answers.
#include "reports/run_diff.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

using nlohmann::json;

bool has(const std::vector<DiffLine>& lines, const std::string& subject, const std::string& part) {
  for (const DiffLine& l : lines)
    if (l.subject.find(subject) != std::string::npos && l.change.find(part) != std::string::npos) return true;
  return false;
}

json bench(double tp_tokens_per_s, double cp_step_b64, double ratio_b64) {
  auto layout = [](const std::string& name, double tokens_per_s, double step_b1, double step_b64) {
    return json{{"layout", name},
                {"prefill_tokens_per_s", tokens_per_s},
                {"prefill_collectives", {{"all_reduce@world", {{"calls", 8}, {"ms", 1.0}, {"bytes", 1 << 20}}}}},
                {"decode", {{{"batch", 1}, {"step_ms", step_b1}}, {{"batch", 64}, {"step_ms", step_b64}}}}};
  };
  return {{"schema", kRunSchema},
          {"subcommand", "bench"},
          {"layouts", {layout("tp", tp_tokens_per_s, 0.5, 2.0), layout("cp-fused-moe", 90000, 0.6, cp_step_b64)}},
          {"ratios",
           {{{"layout", "cp-fused-moe"}, {"baseline", "tp"}, {"prefill_speedup", 0.9}, {"decode_speedup_b64", ratio_b64}}}}};
}

TEST(DiffBench, AgainstItselfNothingChanges) {
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), bench(100000, 2.2, 0.91));
  EXPECT_TRUE(d.regressions.empty() && d.improvements.empty()) << format_diff(d);
}

TEST(DiffBench, SlowerLayoutsDecodeAndRatiosAreRegressions) {
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), bench(70000, 2.9, 0.70));
  EXPECT_TRUE(has(d.regressions, "layout tp", "prefill tokens/s")) << format_diff(d);
  EXPECT_TRUE(has(d.regressions, "layout cp-fused-moe, decode b=64", "step ms")) << format_diff(d);
  EXPECT_TRUE(has(d.regressions, "cp-fused-moe vs tp", "decode_speedup_b64")) << format_diff(d);
  EXPECT_FALSE(has(d.regressions, "decode b=1", "")) << format_diff(d);  // unchanged
  const DiffResult better = diff_runs(bench(100000, 2.2, 0.91), bench(130000, 2.2, 0.91));
  EXPECT_TRUE(better.regressions.empty()) << format_diff(better);
  EXPECT_TRUE(has(better.improvements, "layout tp", "prefill tokens/s")) << format_diff(better);
}

TEST(DiffBench, SmallChangesStayUnderTheThreshold) {
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), bench(96000, 2.3, 0.88));
  EXPECT_TRUE(d.regressions.empty() && d.improvements.empty()) << format_diff(d);
}

TEST(DiffBench, AMissingLayoutOrBatchIsARegression) {
  json n = bench(100000, 2.2, 0.91);
  n["layouts"][1]["decode"].erase(1);
  EXPECT_TRUE(has(diff_runs(bench(100000, 2.2, 0.91), n).regressions, "decode b=64", "missing"));
  n["layouts"].erase(1);
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), n);
  EXPECT_TRUE(has(d.regressions, "layout cp-fused-moe", "missing")) << format_diff(d);
}

json gsm8k(int correct, int identical, const std::string& answer2, bool correct2) {
  auto accuracy = [](int c) {
    // Wilson-like bounds are not needed here: the rule reads the recorded interval.
    const double v = c / 50.0;
    return json{{"correct", c}, {"total", 50}, {"value", v}, {"low95", v - 0.1}, {"high95", v + 0.1}};
  };
  json questions = {{{"line", 1}, {"answer", "18"}, {"correct", true}},
                    {{"line", 2}, {"answer", answer2}, {"correct", correct2}}};
  return {{"schema", kRunSchema},
          {"subcommand", "gsm8k"},
          {"runs",
           {{{"name", "reference"}, {"accuracy", accuracy(30)}, {"decode_tokens_per_s", 1000.0}, {"questions", questions}},
            {{"name", "tp"},
             {"accuracy", accuracy(correct)},
             {"agreement", {{"identical", identical}, {"total", 50}}},
             {"decode_tokens_per_s", 1000.0},
             {"questions", questions}}}}};
}

TEST(DiffGsm8k, AccuracyRegressesOnlyWhenTheIntervalsPart) {
  const json old_run = gsm8k(30, 50, "3", true);
  const DiffResult overlap = diff_runs(old_run, gsm8k(26, 50, "3", true));  // 0.52 +- 0.1 against 0.60 +- 0.1
  EXPECT_FALSE(has(overlap.regressions, "run tp", "accuracy")) << format_diff(overlap);
  EXPECT_TRUE(has(overlap.info, "run tp", "accuracy")) << format_diff(overlap);
  const DiffResult apart = diff_runs(old_run, gsm8k(15, 50, "3", true));  // 0.30 +- 0.1: wholly below
  EXPECT_TRUE(has(apart.regressions, "run tp", "accuracy 0.600 -> 0.300")) << format_diff(apart);
}

TEST(DiffGsm8k, AgreementDropIsARegression) {
  const DiffResult d = diff_runs(gsm8k(30, 50, "3", true), gsm8k(30, 47, "3", true));
  EXPECT_TRUE(has(d.regressions, "run tp", "agreement with the reference 1.000 -> 0.940")) << format_diff(d);
  EXPECT_TRUE(diff_runs(gsm8k(30, 47, "3", true), gsm8k(30, 47, "3", true)).regressions.empty());
}

TEST(DiffGsm8k, ChangedAnswersAreListed) {
  const DiffResult d = diff_runs(gsm8k(30, 50, "3", true), gsm8k(30, 50, "4", false));
  EXPECT_TRUE(has(d.regressions, "run tp, question on line 2", "answer 3 -> 4")) << format_diff(d);
  EXPECT_TRUE(has(d.regressions, "run reference, question on line 2", "answer 3 -> 4")) << format_diff(d);
  EXPECT_FALSE(has(d.regressions, "line 1", "")) << format_diff(d);
  const DiffResult fixed = diff_runs(gsm8k(30, 50, "4", false), gsm8k(30, 50, "3", true));
  EXPECT_TRUE(has(fixed.improvements, "run tp, question on line 2", "answer 4 -> 3")) << format_diff(fixed);
}

}  // namespace
}  // namespace lb
