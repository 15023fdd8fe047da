// `report --history DIR`: every metric of a suite's run folders over the nights, on one page with
// no scripts or external files; a failing check point is red, a failed run a gap.
#include "harness/runtime/errors.h"
#include "reports/report_history.h"
#include "reports/run_record.h"
#include "subprocess.h"
#include "test_util.h"

#include <sys/stat.h>

#include <cstdio>

#include <nlohmann/json.hpp>

namespace lb {
namespace {

using nlohmann::json;

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// A night: a check record (pass or not) and a bench record, or a bench run that failed.
void write_night(const std::string& dir, const std::string& folder, bool check_passes, bool bench_fails,
                 double tokens_per_s) {
  const std::string path = dir + "/" + folder;
  ::mkdir(path.c_str(), 0755);
  json check = {{"schema", kRunSchema}, {"subcommand", "check"}, {"complete", true},
                {"layouts", {{{"layout", "tp"}, {"pass", check_passes},
                              {"layers", {{{"layer", 0}, {"rel_l2", check_passes ? 1e-6 : 0.3}, {"threshold", 1e-5}}}}}}}};
  json bench = {{"schema", kRunSchema}, {"subcommand", "bench"}, {"complete", true},
                {"layouts", {{{"layout", "tp"}, {"prefill_tokens_per_s", tokens_per_s},
                              {"decode", {{{"batch", 1}, {"step_ms", 0.5}}, {{"batch", 64}, {"step_ms", 2.0}}}}}}}};
  write_json(path + "/check.json", check);
  if (!bench_fails) write_json(path + "/bench.json", bench);
  json index = {{"schema", kRunSchema}, {"suite", "t"}, {"folder", folder}, {"commit", folder.substr(17)},
                {"runs", {{{"name", "check"}, {"record", "check.json"}, {"exit_code", check_passes ? 0 : 1}},
                          {{"name", "bench"}, {"record", "bench.json"}, {"exit_code", bench_fails ? 1 : 0}}}}};
  write_json(path + "/suite.json", index);
}

TEST(ReportHistory, AChartPerMetricAPointPerNight) {
  test::TempDir dir;
  write_night(dir.path, "20261129T010000Z_aaaaaaa", true, false, 1000);
  write_night(dir.path, "20261130T010000Z_bbbbbbb", false, true, 0);
  write_night(dir.path, "20261201T010000Z_ccccccc", true, false, 1200);
  ::mkdir((dir / "not-a-run").c_str(), 0755);  // no suite.json: not a night
  const std::string page = render_history_html(dir.path);
  EXPECT_EQ(count(page, "<svg"), 3u) << "check, prefill tokens/s, decode step ms";
  EXPECT_NE(page.find("check: worst rel_l2 / threshold"), std::string::npos);
  EXPECT_NE(page.find("bench: decode step ms"), std::string::npos);
  for (const char* commit : {"aaaaaaa", "bbbbbbb", "ccccccc"}) EXPECT_NE(page.find(commit), std::string::npos) << commit;
  // Three check points, the middle one failing; bench points on nights 1 and 3 only, per series.
  EXPECT_EQ(count(page, "class=\"point fail\""), 1u);
  EXPECT_EQ(count(page, "<circle"), 3u + 2u + 2u * 2u);
  EXPECT_NE(page.find("FAILED"), std::string::npos);  // the bench run of night 2, in the runs table
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("src="), std::string::npos);
  EXPECT_EQ(page.find("href="), std::string::npos);
  // The gap: night 2 breaks the bench line (a move, not a line, to night 3).
  EXPECT_EQ(count(page, " M"), 2u * 3u + 1u);
}

// A night of a collectives run (two sizes of one collective) and a gsm8k run (a reference and a
// layout agreeing on 30 of 40 answers).
void write_collectives_gsm8k_night(const std::string& dir, const std::string& folder, double busbw_largest) {
  const std::string path = dir + "/" + folder;
  ::mkdir(path.c_str(), 0755);
  auto row = [](const char* op, const char* algo, double bytes, double busbw) {
    return json{{"op", op}, {"algo", algo}, {"split", "balanced"}, {"bytes", bytes}, {"busbw_GBps", busbw}};
  };
  json collectives = {{"schema", kRunSchema}, {"subcommand", "collectives"},
                      {"rows", {row("all_reduce", "", 67108864, busbw_largest), row("all_reduce", "", 1048576, 56.78),
                                row("all_gatherv", "grouped", 1048576, 3.5)}}};
  json gsm8k = {{"schema", kRunSchema}, {"subcommand", "gsm8k"},
                {"runs", {{{"name", "reference"}, {"accuracy", {{"value", 0.625}, {"total", 40}}}},
                          {{"name", "tp"}, {"accuracy", {{"value", 0.6}, {"total", 40}}},
                           {"agreement", {{"identical", 30}, {"total", 40}}}}}}};
  write_json(path + "/coll.json", collectives);
  write_json(path + "/gsm.json", gsm8k);
  json index = {{"schema", kRunSchema}, {"suite", "t"}, {"folder", folder}, {"commit", folder.substr(17)},
                {"runs", {{{"name", "coll"}, {"record", "coll.json"}, {"exit_code", 0}},
                          {{"name", "gsm"}, {"record", "gsm.json"}, {"exit_code", 0}}}}};
  write_json(path + "/suite.json", index);
}

TEST(ReportHistory, CollectivesAtTheLargestSizeAndGsm8kAgreement) {
  test::TempDir dir;
  write_collectives_gsm8k_night(dir.path, "20261129T010000Z_aaaaaaa", 12.34);
  write_collectives_gsm8k_night(dir.path, "20261130T010000Z_bbbbbbb", 23.4);
  const std::string page = render_history_html(dir.path);
  EXPECT_EQ(count(page, "<svg"), 3u) << "busbw, accuracy, agreement";
  EXPECT_NE(page.find("coll: busbw GB/s at the largest size"), std::string::npos);
  EXPECT_NE(page.find("gsm: accuracy"), std::string::npos);
  EXPECT_NE(page.find("gsm: agreement with the reference"), std::string::npos);
  // The largest size's busbw per collective, never a smaller size's.
  EXPECT_NE(page.find("<td>12.3</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>23.4</td>"), std::string::npos);
  EXPECT_EQ(page.find("56.8"), std::string::npos);
  EXPECT_NE(page.find("<td>3.5</td>"), std::string::npos);    // all_gatherv has one size: that one
  EXPECT_NE(page.find("<td>0.75</td>"), std::string::npos);   // 30 of 40 identical
  EXPECT_NE(page.find("<td>0.625</td>"), std::string::npos);  // the reference's accuracy
  // Two series (all_reduce, all_gatherv grouped) + two (reference, tp) + one (tp), two nights each.
  EXPECT_EQ(count(page, "<circle"), (2u + 2u + 1u) * 2u);
}

TEST(ReportHistory, ACheckAboveItsThresholdIsRedUnderTheFailLine) {
  test::TempDir dir;
  write_night(dir.path, "20261129T010000Z_aaaaaaa", true, false, 1000);
  write_night(dir.path, "20261130T010000Z_bbbbbbb", false, false, 1000);
  const std::string page = render_history_html(dir.path);
  EXPECT_EQ(count(page, "class=\"limit\""), 1u) << "only the check chart has a pass/fail line";
  EXPECT_EQ(count(page, "class=\"point fail\""), 1u);
  EXPECT_NE(page.find("<td class=\"fail\">30000 FAIL</td>"), std::string::npos) << "0.3 / 1e-5 in the table";
  EXPECT_NE(page.find("FAILED: exit 1"), std::string::npos);
}

TEST(ReportHistory, AMissingRecordOrIndexIsAGapMarkedFailed) {
  test::TempDir dir;
  write_night(dir.path, "20261129T010000Z_aaaaaaa", true, false, 1000);
  write_night(dir.path, "20261130T010000Z_bbbbbbb", true, false, 1000);
  write_night(dir.path, "20261201T010000Z_ccccccc", true, false, 1000);
  write_night(dir.path, "20261202T010000Z_ddddddd", true, false, 1000);
  // Night 2: bench exited 0 but its record is gone. Night 3: the suite.json was cut short.
  ::remove((dir / "20261130T010000Z_bbbbbbb/bench.json").c_str());
  test::write_file_text(dir / "20261201T010000Z_ccccccc/suite.json", "{\"runs\": [");
  const std::string page = render_history_html(dir.path);
  EXPECT_NE(page.find("FAILED: no record"), std::string::npos);
  EXPECT_NE(page.find("ccccccc"), std::string::npos) << "the broken night keeps its column, named by its folder";
  // Check: nights 1, 2, 4; bench tokens/s and two decode series: nights 1 and 4.
  EXPECT_EQ(count(page, "<circle"), 3u + 3u * 2u);
  // The tables say failed where the run failed (night 2's bench, three series), "-" where no
  // run was listed (night 3: every series, and both runs in the runs table).
  EXPECT_EQ(count(page, "<td class=\"fail\">failed</td>"), 3u);
  EXPECT_EQ(count(page, "<td class=\"gap\">-</td>"), 4u + 2u);
}

TEST(ReportHistory, OddFieldsDoNotThrowAndALayoutWithoutLayersIsNoZero) {
  test::TempDir dir;
  const std::string night = dir / "20261129T010000Z_aaaaaaa";
  ::mkdir(night.c_str(), 0755);
  json check = {{"schema", kRunSchema}, {"subcommand", "check"},
                {"layouts", {{{"layout", "oom"}, {"pass", false}, {"layers", json::array()}},
                             {{"layout", "tp"}, {"pass", true}, {"layers", "not a list"}}}}};
  json bench = {{"schema", kRunSchema}, {"subcommand", "bench"}, {"layouts", "not a list"}};
  write_json(night + "/check.json", check);
  write_json(night + "/bench.json", bench);
  write_json(night + "/suite.json", {{"schema", kRunSchema}, {"folder", 5}, {"commit", 7},
                                     {"runs", {{{"name", "check"}, {"record", "check.json"}, {"exit_code", 1}},
                                               {{"name", "bench"}, {"record", 3}, {"exit_code", 0}},
                                               "not a run"}}});
  std::string page;
  ASSERT_NO_THROW(page = render_history_html(dir.path));
  EXPECT_EQ(page.find("<svg"), std::string::npos) << "no layout measured a layer: nothing to draw";
  EXPECT_NE(page.find("FAILED: exit 1"), std::string::npos);
}

TEST(ReportHistory, AFolderWithoutNightsIsAnError) {
  test::TempDir dir;
  EXPECT_THROW(render_history_html(dir.path), InputError);
  EXPECT_THROW(render_history_html(dir / "missing"), InputError);
  try {
    render_history_html(dir.path);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path), std::string::npos) << e.what();
  }
}

TEST(ReportHistory, FromTheCommandLine) {
  test::TempDir dir;
  write_night(dir.path, "20261129T010000Z_aaaaaaa", true, false, 1000);
  const test::CliResult r = test::run_cli({"report", "--history", dir.path, "-o", dir / "h.html"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(test::read_file_text(dir / "h.html").find("<svg"), std::string::npos);
  const test::CliResult none = test::run_cli({"report", "-o", dir / "x.html"});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("--history"), std::string::npos) << none.err;
}

}  // namespace
}  // namespace lb
