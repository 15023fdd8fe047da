// `report --history DIR`: every metric of a suite's run folders over the nights, on one page with
// no scripts or external files; a failing check point is red, a failed run a gap.
#include "harness/runtime/errors.h"
#include "reports/report_history.h"
#include "reports/run_record.h"
#include "subprocess.h"
#include "test_util.h"

#include <sys/stat.h>

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

TEST(ReportHistory, AFolderWithoutNightsIsAnError) {
  test::TempDir dir;
  EXPECT_THROW(render_history_html(dir.path), InputError);
  EXPECT_THROW(render_history_html(dir / "missing"), InputError);
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
