// The report's bench and gsm8k sections: the numbers a nightly reader looks for, charts drawn, text
// escaped, and old records with fields missing still rendered.
#include "reports/report_html.h"
#include "reports/run_record.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
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
             {"prefill_collectives", {{"all_reduce@attn_tp", {{"calls", 8}, {"ms", 0.55}, {"bytes", 64 << 20}}}}},
             {"decode", {{{"batch", 1}, {"step_ms", 0.641}, {"tokens_per_s", 1560.0}, {"share_of_memory_floor", 0.31}},
                         {{"batch", 64}, {"step_ms", 1.572}, {"tokens_per_s", 40712.0}, {"share_of_memory_floor", 0.5}}}}},
            {{"layout", "cp<script>"}, {"replaces", "tp"}, {"prefill_ms", 12.1}, {"prefill_tokens_per_s", 677000.0}}}},
          {"ratios", {{{"layout", "cp<script>"}, {"baseline", "tp"}, {"prefill_speedup", 0.868}, {"decode_speedup_b64", 0.932}}}}};
}

TEST(ReportBench, LayoutsDecodeBatchesRatiosAndCharts) {
  const std::string page = render_report_html({bench_record()});
  EXPECT_FALSE(contains(page, "<h3>Fields</h3>")) << "the generic dump";
  for (const char* part : {"780123", "201.5", "26%", "0.641", "1.572", "31%", "all_reduce@attn_tp", "64 MiB", "0.868x",
                           "b=64 0.932x"})
    EXPECT_TRUE(contains(page, part)) << part;
  EXPECT_EQ(count(page, "<svg"), 2u) << "prefill rates and decode steps";
  EXPECT_FALSE(contains(page, "cp<script>"));
  EXPECT_TRUE(contains(page, "cp&lt;script&gt;"));
}

json gsm8k_record() {
  auto question = [](int line, const char* answer, bool correct, json first_difference, const char* text) {
    return json{{"line", line}, {"answer", answer}, {"correct", correct}, {"first_difference", first_difference},
                {"text", text}};
  };
  auto accuracy = [](int correct) {
    return json{{"correct", correct}, {"total", 3}, {"value", correct / 3.0}, {"low95", 0.1}, {"high95", 0.9}};
  };
  return {{"schema", kRunSchema},
          {"subcommand", "gsm8k"},
          {"accuracy_meaningful", false},
          {"runs",
           {{{"name", "reference"},
             {"accuracy", accuracy(2)},
             {"decode_tokens_per_s", 975.9},
             {"questions", {question(1, "18", true, nullptr, "so 18"), question(2, "3", true, nullptr, "so 3"),
                            question(3, "7", false, nullptr, "so 7")}}},
            {{"name", "tp"},
             {"accuracy", accuracy(1)},
             {"agreement", {{"identical", 2}, {"total", 3}}},
             {"decode_tokens_per_s", 896.5},
             {"questions", {question(1, "18", true, nullptr, "so 18"), question(2, "4", false, 9, "so <b>4</b>"),
                            question(3, "7", false, nullptr, "so 7")}}}}}};
}

TEST(ReportGsm8k, AccuracyAgreementHistogramAndTheDifferingAnswers) {
  const std::string page = render_report_html({gsm8k_record()});
  EXPECT_FALSE(contains(page, "<h3>Fields</h3>"));
  for (const char* part : {"0.667", "0.100-0.900", "2/3", "976", "not meaningful"})
    EXPECT_TRUE(contains(page, part)) << part;
  EXPECT_EQ(count(page, "<svg"), 1u) << "one histogram, for the one layout";
  EXPECT_TRUE(contains(page, "tokens 8-15"));  // question 2 first differs at token 9
  EXPECT_TRUE(contains(page, "<details><summary>1 question(s)"));
  EXPECT_TRUE(contains(page, "so &lt;b&gt;4&lt;/b&gt;"));  // both texts, escaped
  EXPECT_FALSE(contains(page, "so 18</td>")) << "a question that agrees is not listed";
}

TEST(ReportBenchGsm8k, RecordsWithoutTheirOptionalFieldsStillRender) {
  const json bare_bench = {{"schema", kRunSchema}, {"subcommand", "bench"}, {"layouts", {{{"layout", "tp"}}}}};
  const json bare_gsm8k = {{"schema", kRunSchema}, {"subcommand", "gsm8k"}, {"runs", {{{"name", "tp"}}}}};
  const std::string page = render_report_html({bare_bench, bare_gsm8k});
  EXPECT_TRUE(contains(page, "<h3>Bench</h3>"));
  EXPECT_TRUE(contains(page, "<h3>GSM8K</h3>"));
}

}  // namespace
}  // namespace lb
