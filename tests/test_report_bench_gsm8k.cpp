// The report's bench and gsm8k sections: the numbers a nightly reader looks for, charts drawn, text
// escaped, and old records with fields missing still rendered.
#include "harness/runtime/file_util.h"
#include "reports/report_html.h"
#include "reports/run_record.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <dirent.h>

#include <algorithm>

namespace lb {
namespace {

using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// The text between the first `from` and the next `to` after it; "" when either is missing.
std::string between(const std::string& text, const std::string& from, const std::string& to) {
  const size_t a = text.find(from);
  if (a == std::string::npos) return "";
  const size_t b = text.find(to, a);
  return b == std::string::npos ? "" : text.substr(a, b - a);
}

json bench_record() {
  return {{"schema", kRunSchema},
          {"subcommand", "bench"},
          {"peak_matmul_tflops", 790.0},
          {"layouts",
           {{{"layout", "tp"},
             {"prefill_ms", 10.5},
             {"prefill_tokens_per_s", 780123.0},
             {"prefill_tflops_per_rank", 201.5},
             {"prefill_share_of_matmul_peak", 0.255},
             {"prefill_time_split", {{"compute_share", 0.71}, {"communication_share", 0.083}, {"waiting_share", 0.207}}},
             {"prefill_collectives",
              {{"all_reduce@attn_tp", {{"calls", 8}, {"ms", 0.55}, {"bytes", 64 << 20}}},
               {"all_reduce@moe", {{"calls", 4}, {"ms", 0.25}, {"bytes", 32 << 20}}}}},
             {"decode", {{{"batch", 1}, {"step_ms", 0.641}, {"tokens_per_s", 1560.0}, {"share_of_memory_floor", 0.31}},
                         {{"batch", 64}, {"step_ms", 1.572}, {"tokens_per_s", 40712.0}, {"share_of_memory_floor", 0.5}}}}},
            {{"layout", "cp<script>"},
             {"replaces", "tp"},
             {"prefill_ms", 12.1},
             {"prefill_tokens_per_s", 677000.0},
             {"decode", {{{"batch", 64}, {"step_ms", 1.687}, {"tokens_per_s", 37900.0}}}}}}},
          {"ratios",
           {{{"layout", "cp<script>"},
             {"baseline", "tp"},
             {"prefill_speedup", 0.868},
             {"decode_speedup_b64", 0.932},
             {"changed_collectives",
              {{"baseline_ops", {"all_reduce@attn_tp"}},
               {"baseline_ms", 0.55},
               {"layout_ops", {"all_gather@attn_cp", "reduce_scatter@attn_cp"}},
               {"layout_ms", 0.44},
               {"speedup", 1.25}}}}}}};
}

TEST(ReportBench, LayoutsDecodeBatchesRatiosAndCharts) {
  const std::string page = render_report_html({bench_record()});
  EXPECT_FALSE(contains(page, "<h3>Fields</h3>")) << "the generic dump";
  for (const char* part : {"780123", "201.5", "26%", "790 TFLOP/s", "0.641", "1.572", "1.687", "31%",
                           "all_reduce@attn_tp", "64 MiB", "0.868x", "b=64 0.932x", "1.250x"})
    EXPECT_TRUE(contains(page, part)) << part;
  EXPECT_TRUE(contains(page, "<td>0.800</td>")) << "tp's collectives summed: 0.55 + 0.25 ms";
  // tp's prefill time split (compute, communication, waiting); the other layout's record has none.
  EXPECT_TRUE(contains(page, "<td>71%</td><td>8%</td><td>21%</td>")) << between(page, "<h3>Prefill</h3>", "</table>");
  EXPECT_TRUE(contains(page, "<td>-</td><td>-</td><td>-</td>")) << between(page, "<h3>Prefill</h3>", "</table>");
  EXPECT_TRUE(contains(page, "all_reduce@attn_tp (0.550 ms)"));
  EXPECT_TRUE(contains(page, "all_gather@attn_cp, reduce_scatter@attn_cp (0.440 ms)"));
  EXPECT_EQ(count(page, "<svg"), 2u) << "prefill rates and decode steps";
}

TEST(ReportBench, DecodeChartGroupsTheLayoutsByBatch) {
  const std::string page = render_report_html({bench_record()});
  const std::string chart = between(page, "Decode step latency per batch size", "</svg>");
  ASSERT_FALSE(chart.empty());
  EXPECT_TRUE(contains(chart, ">batch 1</text>"));
  EXPECT_TRUE(contains(chart, ">batch 64</text>"));
  EXPECT_EQ(count(chart, "<rect"), 3u) << "tp at 1 and 64, cp at 64; cp has no bar at batch 1";
  EXPECT_TRUE(contains(chart, "batch 64, cp&lt;script&gt;: 1.687 ms/step"));
}

TEST(ReportBench, RecordTextIsEscaped) {
  const std::string page = render_report_html({bench_record()});
  EXPECT_FALSE(contains(page, "cp<script>"));
  EXPECT_TRUE(contains(page, "cp&lt;script&gt;"));
}

json question(int line, json answer, json first_difference, const char* text) {
  json q = {{"line", line}, {"answer", answer}, {"reference_answer", "18"}, {"correct", answer == "18"}, {"text", text}};
  if (!first_difference.is_discarded()) q["first_difference"] = first_difference;
  return q;
}

json gsm8k_record() {
  auto accuracy = [](int correct) {
    return json{{"correct", correct}, {"total", 4}, {"value", correct / 4.0}, {"low95", 0.1}, {"high95", 0.9}};
  };
  const json none = json::value_t::discarded;  // the reference's questions carry no first_difference
  return {{"schema", kRunSchema},
          {"subcommand", "gsm8k"},
          {"accuracy_meaningful", false},
          {"runs",
           {{{"name", "reference"},
             {"accuracy", accuracy(2)},
             {"prefill_tokens_per_s", 27864.7},
             {"decode_tokens_per_s", 975.9},
             {"questions", {question(1, "18", none, "so 18"), question(2, "3", none, "so 3"),
                            question(3, "7", none, "so 7 then"), question(4, nullptr, none, "no idea")}}},
            {{"name", "tp<script>"},
             {"accuracy", accuracy(1)},
             {"agreement", {{"identical", 2}, {"total", 4}}},
             {"prefill_tokens_per_s", 64874.1},
             {"decode_tokens_per_s", 896.5},
             {"questions", {question(1, "18", nullptr, "so 18"), question(2, "4", 9, "so <b>4</b>"),
                            question(3, "7", 30, "so 7 but"), question(4, nullptr, nullptr, "no idea")}}}}}};
}

TEST(ReportGsm8k, AccuracyWithIntervalAgreementAndRates) {
  const std::string page = render_report_html({gsm8k_record()});
  EXPECT_FALSE(contains(page, "<h3>Fields</h3>"));
  for (const char* part : {"0.500 (not meaningful: random weights)", "0.100-0.900", "2/4", "27865", "976", "64874"})
    EXPECT_TRUE(contains(page, part)) << part;
  EXPECT_TRUE(contains(page, "<td>tp&lt;script&gt;</td><td>0.250 (not meaningful: random weights)</td>"));
  const std::string meaningful = [] {
    json r = gsm8k_record();
    r["accuracy_meaningful"] = true;
    return render_report_html({r});
  }();
  EXPECT_FALSE(contains(meaningful, "(not meaningful"));
}

TEST(ReportGsm8k, HistogramOfTheFirstDifferingToken) {
  const std::string page = render_report_html({gsm8k_record()});
  EXPECT_EQ(count(page, "<svg"), 1u) << "one histogram, for the one layout";
  const std::string chart = between(page, "first generated token that differs", "</svg>");
  // Tokens 9 and 30: bins 2 wide, 0-1 .. 30-31, empty ones drawn too.
  EXPECT_TRUE(contains(chart, ">identical</text>"));
  EXPECT_TRUE(contains(chart, "identical: 2 questions"));
  EXPECT_TRUE(contains(chart, "tokens 8-9: 1 questions"));
  EXPECT_TRUE(contains(chart, "tokens 30-31: 1 questions"));
  EXPECT_TRUE(contains(chart, "tokens 16-17: 0 questions"));
  EXPECT_EQ(count(chart, "<rect"), 1u + 16u);
}

TEST(ReportGsm8k, TheDifferingAnswersAreFoldedWithBothTexts) {
  const std::string page = render_report_html({gsm8k_record()});
  const std::string folded = between(page, "<details>", "</details>");
  ASSERT_FALSE(folded.empty());
  EXPECT_TRUE(contains(folded, "<summary>1 question(s)"));
  EXPECT_TRUE(contains(folded, "<td>3</td><td>4</td>")) << "the reference run's answer, then the layout's";
  EXPECT_TRUE(contains(folded, "so &lt;b&gt;4&lt;/b&gt;"));  // both texts, escaped
  EXPECT_TRUE(contains(folded, "<td>so 3</td>"));
  EXPECT_FALSE(contains(folded, "so <b>"));
  EXPECT_FALSE(contains(folded, "so 7")) << "the text differs but the answer agrees";
  EXPECT_FALSE(contains(folded, "so 18")) << "identical";
  EXPECT_FALSE(contains(folded, "no idea")) << "no answer in either";
}

TEST(ReportGsm8k, QuestionsWithoutLinesMatchByPosition) {
  json r = gsm8k_record();
  for (json& run : r["runs"])
    for (json& q : run["questions"]) q.erase("line");
  const std::string folded = between(render_report_html({r}), "<details>", "</details>");
  EXPECT_TRUE(contains(folded, "<summary>1 question(s)"));
  EXPECT_TRUE(contains(folded, "so &lt;b&gt;4&lt;/b&gt;"));
}

TEST(ReportBenchGsm8k, RecordsWithoutTheirOptionalFieldsStillRender) {
  const json bare_bench = {{"schema", kRunSchema}, {"subcommand", "bench"}, {"layouts", {{{"layout", "tp"}}}}};
  const json bare_gsm8k = {{"schema", kRunSchema}, {"subcommand", "gsm8k"}, {"runs", {{{"name", "tp"}}}}};
  const json no_runs = {{"schema", kRunSchema}, {"subcommand", "gsm8k"}};
  const std::string page = render_report_html({bare_bench, bare_gsm8k, no_runs});
  EXPECT_TRUE(contains(page, "<h3>Bench</h3>"));
  EXPECT_TRUE(contains(page, "<h3>GSM8K</h3>"));
  EXPECT_TRUE(contains(page, "<td>tp</td><td></td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td>"))
      << "no rate, TFLOP/s, share of the peak or collectives: dashes";
  EXPECT_TRUE(contains(page, "No runs recorded."));

  // An older gsm8k writer: a reference and a layout, no agreement, no first_difference.
  json old = gsm8k_record();
  old.erase("accuracy_meaningful");
  for (json& run : old["runs"]) {
    run.erase("agreement");
    run.erase("prefill_tokens_per_s");
    for (json& q : run["questions"]) q.erase("first_difference");
  }
  const std::string old_page = render_report_html({old});
  EXPECT_TRUE(contains(old_page, "No first differences recorded."));
  EXPECT_FALSE(contains(old_page, "(not meaningful"));
  EXPECT_TRUE(contains(old_page, "<summary>1 question(s)"));
}

TEST(ReportBenchGsm8k, FieldsOfTheWrongTypeDoNotThrow) {
  json bench = bench_record();
  bench["layouts"].push_back("not a layout");
  bench["layouts"][0]["decode"].push_back(7);
  bench["layouts"][0]["prefill_collectives"]["odd"] = "x";
  bench["ratios"].push_back(3);
  bench["ratios"][0]["changed_collectives"]["layout_ops"] = "one";
  json gsm8k = gsm8k_record();
  gsm8k["runs"][1]["questions"].push_back(5);
  gsm8k["runs"][1]["questions"][1]["first_difference"] = 1e300;
  gsm8k["runs"][1]["accuracy"] = "high";
  gsm8k["runs"].push_back("not a run");
  const json layouts_not_a_list = {{"schema", kRunSchema}, {"subcommand", "bench"}, {"layouts", "tp"}};
  std::string page;
  EXPECT_NO_THROW(page = render_report_html({bench, gsm8k, layouts_not_a_list}));
  EXPECT_TRUE(contains(page, "</html>"));
}

// Every *.json under `dir`, sorted.
std::vector<std::string> json_files(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) out.push_back(join_path(dir, name));
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ReportBenchGsm8k, RendersTheCommittedBenchAndGsm8kRecords) {
  const std::string results = join_path(LB_FIXTURE_DIR, "../../results");
  size_t rendered = 0;
  for (const char* dir : {"bench", "decode", "gsm8k"})
    for (const std::string& path : json_files(join_path(results, dir))) {
      const json run = read_run_file(path);
      const std::string sub = run.value("subcommand", "");
      if (sub != "bench" && sub != "gsm8k") continue;
      const std::string page = render_report_html({run});
      EXPECT_FALSE(contains(page, "<h3>Fields</h3>")) << path;
      EXPECT_TRUE(contains(page, sub == "bench" ? "<h3>Prefill</h3>" : "95% interval")) << path;
      // A gsm8k run of the reference alone (--layout none) has no layout to draw a histogram for.
      if (sub == "bench") {
        EXPECT_GE(count(page, "<svg"), 1u) << path;
      }
      EXPECT_FALSE(contains(page, "http")) << path;
      EXPECT_FALSE(contains(page, "<script")) << path;
      ++rendered;
    }
  if (rendered == 0) GTEST_SKIP() << "no bench or gsm8k records under " << results;
  EXPECT_GE(rendered, 10u);
}

}  // namespace
}  // namespace lb
