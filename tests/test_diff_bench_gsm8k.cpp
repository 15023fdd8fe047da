// `diff` rules for bench and gsm8k records: speed per layout and per decode batch, each new layout's
// ratio to its baseline; accuracy only when the intervals part, agreement, changed answers.
#include "reports/run_diff.h"

#include "harness/runtime/errors.h"
#include "reports/run_record.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

TEST(DiffBench, SlowerPrefillCollectiveIsARegression) {
  json n = bench(100000, 2.2, 0.91);
  n["layouts"][0]["prefill_collectives"]["all_reduce@world"]["ms"] = 1.3;
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), n);
  EXPECT_TRUE(has(d.regressions, "layout tp, prefill all_reduce@world", "ms 1.000 -> 1.300")) << format_diff(d);
  EXPECT_FALSE(has(d.regressions, "layout cp-fused-moe", "")) << format_diff(d);
  n["layouts"][0]["prefill_collectives"]["all_reduce@world"]["ms"] = 1.05;
  EXPECT_TRUE(diff_runs(bench(100000, 2.2, 0.91), n).regressions.empty());
}

TEST(DiffBench, MaxSlowdownIsTheThreshold) {
  DiffThresholds lenient;
  lenient.max_slowdown = 0.5;
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), bench(70000, 2.9, 0.70), lenient);
  EXPECT_TRUE(d.regressions.empty()) << format_diff(d);
  DiffThresholds strict;
  strict.max_slowdown = 0.01;
  const DiffResult s = diff_runs(bench(100000, 2.2, 0.91), bench(96000, 2.3, 0.88), strict);
  EXPECT_TRUE(has(s.regressions, "layout tp", "prefill tokens/s")) << format_diff(s);
  EXPECT_TRUE(has(s.regressions, "cp-fused-moe vs tp", "decode_speedup_b64")) << format_diff(s);
}

TEST(DiffBench, NewLayoutsBatchesAndCollectivesAreInfo) {
  json n = bench(100000, 2.2, 0.91);
  n["layouts"][0]["decode"].push_back({{"batch", 8}, {"step_ms", 1.0}});
  n["layouts"][0]["prefill_collectives"]["all_gather@world"] = {{"calls", 1}, {"ms", 0.1}, {"bytes", 4096}};
  n["layouts"].push_back({{"layout", "ep"}, {"prefill_tokens_per_s", 50000}});
  const DiffResult d = diff_runs(bench(100000, 2.2, 0.91), n);
  EXPECT_FALSE(d.regressed()) << format_diff(d);
  EXPECT_TRUE(has(d.info, "layout tp, decode b=8", "new")) << format_diff(d);
  EXPECT_TRUE(has(d.info, "layout tp, prefill all_gather@world", "newly called")) << format_diff(d);
  EXPECT_TRUE(has(d.info, "layout ep", "new")) << format_diff(d);
}

TEST(DiffBench, AnEntryWithoutItsKeyOrWithATakenOneIsRefused) {
  auto refusal = [](const json& n) -> std::string {
    try {
      diff_runs(bench(100000, 2.2, 0.91), n);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  json no_batch = bench(100000, 2.2, 0.91);
  no_batch["layouts"][1]["decode"][0].erase("batch");
  EXPECT_NE(refusal(no_batch).find("the new run's \"decode\" of layout cp-fused-moe has no \"batch\""),
            std::string::npos)
      << refusal(no_batch);
  json twice = bench(100000, 2.2, 0.91);
  twice["layouts"][1]["layout"] = "tp";
  EXPECT_NE(refusal(twice).find("two entries with \"layout\" tp"), std::string::npos) << refusal(twice);
}

// The records committed under results/ (what `diff` meets in practice): each against itself says
// nothing, and a planted slowdown of one layout is found in it.
TEST(DiffBench, CommittedRecordsAgainstThemselves) {
  const std::string results = test::fixture_dir("../../results");
  std::vector<std::string> paths;
  for (const char* path : {"bench/bench_deepseek-v3_layoutA_4L_2gpu_bf16_fused.json",
                           "bench/bench_deepseek-v4-flash_4L_2gpu_f32.json",
                           "bench/bench_qwen3-30b-a3b_4L_2gpu_bf16_fused.json",
                           "decode/bench_decode_deepseek-v3_layoutA_4L_2gpu_bf16_fused.json",
                           "decode/bench_decode_qwen3-30b-a3b_4L_1gpu_bf16_fused.json",
                           "gsm8k/gsm8k_qwen3-30b-a3b_4L_2gpu_bf16.json",
                           "gsm8k/gsm8k_qwen3-30b-a3b_48L_2gpu_bf16_200q.json"})
    if (is_regular_file(join_path(results, path))) paths.push_back(join_path(results, path));
  if (paths.empty()) GTEST_SKIP() << "no bench or gsm8k records under " << results;
  for (const std::string& path : paths) {
    const json run = read_run_file(path);
    const DiffResult same = diff_runs(run, run);
    EXPECT_TRUE(same.regressions.empty() && same.improvements.empty()) << path << "\n" << format_diff(same);
    json slower = run;
    json& first = slower.contains("layouts") ? slower["layouts"][0] : slower["runs"][0];
    first["prefill_tokens_per_s"] = first["prefill_tokens_per_s"].get<double>() * 0.5;
    const DiffResult d = diff_runs(run, slower);
    EXPECT_TRUE(has(d.regressions, "", "prefill tokens/s")) << path << "\n" << format_diff(d);
  }
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

// A trained checkpoint's accuracy means something: a layout outside the reference's interval in the
// new run is a regression, even against an old run where it was as low; with random weights it is not.
TEST(DiffGsm8k, LayoutOutsideTheReferenceIntervalIsARegression) {
  json low = gsm8k(15, 50, "3", true);  // tp 0.30 against the reference's 0.60 [0.50, 0.70]
  low["accuracy_meaningful"] = true;
  const DiffResult d = diff_runs(low, low);
  EXPECT_TRUE(has(d.regressions, "run tp", "accuracy 0.300 outside the reference's 95% interval")) << format_diff(d);
  EXPECT_FALSE(has(d.regressions, "run reference", "outside")) << format_diff(d);
  json inside = gsm8k(27, 50, "3", true);  // 0.54: inside
  inside["accuracy_meaningful"] = true;
  EXPECT_FALSE(diff_runs(inside, inside).regressed()) << format_diff(diff_runs(inside, inside));
  json random_weights = low;
  random_weights["accuracy_meaningful"] = false;
  EXPECT_FALSE(diff_runs(random_weights, random_weights).regressed());
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

TEST(DiffGsm8k, AccuracyRiseWithPartedIntervalsIsAnImprovement) {
  const DiffResult d = diff_runs(gsm8k(15, 50, "3", true), gsm8k(30, 50, "3", true));
  EXPECT_TRUE(has(d.improvements, "run tp", "accuracy 0.300 -> 0.600")) << format_diff(d);
  EXPECT_FALSE(d.regressed()) << format_diff(d);
}

TEST(DiffGsm8k, AgreementDropWithinItsThresholdIsNot) {
  DiffThresholds t;
  t.max_agreement_drop = 0.1;
  const DiffResult d = diff_runs(gsm8k(30, 50, "3", true), gsm8k(30, 47, "3", true), t);
  EXPECT_FALSE(d.regressed()) << format_diff(d);
  const DiffResult far = diff_runs(gsm8k(30, 50, "3", true), gsm8k(30, 40, "3", true), t);
  EXPECT_TRUE(has(far.regressions, "run tp", "agreement with the reference 1.000 -> 0.800")) << format_diff(far);
}

TEST(DiffGsm8k, SlowerDecodeIsARegression) {
  json n = gsm8k(30, 50, "3", true);
  n["runs"][1]["decode_tokens_per_s"] = 700.0;
  const DiffResult d = diff_runs(gsm8k(30, 50, "3", true), n);
  EXPECT_TRUE(has(d.regressions, "run tp", "decode tokens/s 1000 -> 700")) << format_diff(d);
  EXPECT_FALSE(has(d.regressions, "run reference", "")) << format_diff(d);
  n["runs"][1]["decode_tokens_per_s"] = 950.0;
  EXPECT_FALSE(diff_runs(gsm8k(30, 50, "3", true), n).regressed());
}

TEST(DiffGsm8k, AMissingRunIsARegression) {
  json n = gsm8k(30, 50, "3", true);
  n["runs"].erase(1);
  const DiffResult d = diff_runs(gsm8k(30, 50, "3", true), n);
  EXPECT_TRUE(has(d.regressions, "run tp", "missing")) << format_diff(d);
}

// 30 changed answers: the first 25 wrong before and after, the last 5 correct and now wrong. The
// listing stops at 20; the 5 lost answers past it still make a regression.
TEST(DiffGsm8k, ChangedAnswersPastTheCapAreCountedAndStillRegress) {
  auto run = [](bool later) {
    json questions = json::array();
    for (int line = 1; line <= 30; ++line) {
      const bool correct = line > 25 && !later;
      questions.push_back({{"line", line}, {"answer", (later ? "new " : "old ") + std::to_string(line)},
                           {"correct", correct}});
    }
    return json{{"schema", kRunSchema}, {"subcommand", "gsm8k"}, {"runs", {{{"name", "tp"}, {"questions", questions}}}}};
  };
  const DiffResult d = diff_runs(run(false), run(true));
  size_t listed = 0;
  for (const auto* lines : {&d.regressions, &d.improvements, &d.info})
    for (const DiffLine& l : *lines) listed += l.subject.find("question on line") != std::string::npos;
  EXPECT_EQ(listed, 20u) << format_diff(d);
  EXPECT_TRUE(has(d.regressions, "run tp", "10 more questions changed their answer (5 correct -> wrong"))
      << format_diff(d);
}

TEST(DiffGsm8k, AQuestionWithoutItsLineIsRefused) {
  json n = gsm8k(30, 50, "3", true);
  n["runs"][1]["questions"][0].erase("line");
  EXPECT_THROW(diff_runs(gsm8k(30, 50, "3", true), n), InputError);
}

}  // namespace
}  // namespace lb
