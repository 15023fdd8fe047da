// Run reports. `diff` names what got worse between two records, past its thresholds and no
// further, and refuses records it cannot compare; the HTML report renders every record kind into
// one page that loads nothing and escapes what the records say. Records are crafted in
// tests/fixtures/reports/ and varied here.
#include "harness/runtime/errors.h"
#include "reports/report_html.h"
#include "reports/run_diff.h"
#include "reports/run_record.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lb {
namespace {

using nlohmann::json;

json fixture(const std::string& name) { return read_run_file(test::fixture_dir("reports/" + name)); }

// One line with exactly this subject whose change mentions `part`.
bool has_line(const std::vector<DiffLine>& lines, const std::string& subject, const std::string& part) {
  for (const auto& l : lines)
    if (l.subject == subject && l.change.find(part) != std::string::npos) return true;
  return false;
}

bool mentions(const std::vector<DiffLine>& lines, const std::string& subject) {
  for (const auto& l : lines)
    if (l.subject == subject) return true;
  return false;
}

json& layer(json& run, size_t layout, size_t layer) { return run["layouts"][layout]["layers"][layer]; }

std::string error_of(const json& old_run, const json& new_run) {
  try {
    diff_runs(old_run, new_run, {});
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(DiffRuns, ARunAgainstItselfHasNoChanges) {
  for (const char* name : {"check_old.json", "collectives.json", "reference.json"}) {
    const DiffResult d = diff_runs(fixture(name), fixture(name), {});
    EXPECT_TRUE(d.regressions.empty() && d.improvements.empty() && d.info.empty()) << name << "\n"
                                                                                  << format_diff(d);
  }
}

TEST(DiffRuns, CheckRegressionsAreNamed) {
  const DiffResult d = diff_runs(fixture("check_old.json"), fixture("check_new.json"), {});
  const std::string all = format_diff(d);
  EXPECT_TRUE(d.regressed());
  EXPECT_TRUE(has_line(d.regressions, "layout cp-fused-moe, layer 2", "passed, now fails")) << all;
  EXPECT_TRUE(has_line(d.regressions, "layout cp-fused-moe, layer 3", "passed, now fails")) << all;
  EXPECT_TRUE(has_line(d.regressions, "layout cp-fused-moe", "passed, now fails")) << all;
  EXPECT_TRUE(has_line(d.regressions, "layout tp, layer 1", "1.40e-07 -> 4.20e-06")) << all;  // 30x, still a pass
  EXPECT_TRUE(has_line(d.regressions, "layout tp", "layout_ms 120.00 -> 150.00 (+25.0%)")) << all;
  EXPECT_TRUE(has_line(d.regressions, "layout dp-attn-ar", "missing in the new")) << all;
  EXPECT_TRUE(has_line(d.improvements, "layout cp-fused-moe", "layout_ms 100.00 -> 80.00")) << all;
  EXPECT_TRUE(has_line(d.info, "layout dense-tp1", "new (pass)")) << all;
  EXPECT_TRUE(mentions(d.info, "command")) << all;
  // Layers that did not move are not listed.
  EXPECT_FALSE(mentions(d.regressions, "layout tp, layer 0")) << all;
  EXPECT_FALSE(mentions(d.regressions, "layout tp, layer 2")) << all;
  EXPECT_EQ(d.regressions.size(), 6u) << all;
}

TEST(DiffRuns, CheckImprovementsAreListedApart) {
  json old_run = fixture("check_old.json");
  json new_run = old_run;
  layer(old_run, 0, 1)["rel_l2"] = 8e-6;  // a near miss, fixed
  layer(new_run, 0, 1)["rel_l2"] = 1.5e-7;
  layer(old_run, 1, 2)["rel_l2"] = 2e-3;
  layer(old_run, 1, 2)["pass"] = false;
  old_run["layouts"][1]["pass"] = false;
  new_run["layouts"][2]["layout_ms"] = 60.0;
  const DiffResult d = diff_runs(old_run, new_run, {});
  const std::string all = format_diff(d);
  EXPECT_FALSE(d.regressed()) << all;
  EXPECT_TRUE(has_line(d.improvements, "layout tp, layer 1", "8.00e-06 -> 1.50e-07")) << all;
  EXPECT_TRUE(has_line(d.improvements, "layout cp-fused-moe, layer 2", "failed, now passes")) << all;
  EXPECT_TRUE(has_line(d.improvements, "layout cp-fused-moe", "failed, now passes")) << all;
  EXPECT_TRUE(has_line(d.improvements, "layout dp-attn-ar", "layout_ms 90.00 -> 60.00 (-33.3%)")) << all;
}

TEST(DiffRuns, SmallChangesStayUnderTheThresholds) {
  json old_run = fixture("check_old.json");
  json new_run = old_run;
  layer(new_run, 0, 0)["rel_l2"] = 5e-7;   // 4.5x, but under the 1e-6 floor: summation-order noise
  layer(old_run, 0, 1)["rel_l2"] = 2e-6;   // above the floor, grown 1.75x only
  layer(new_run, 0, 1)["rel_l2"] = 3.5e-6;
  new_run["layouts"][0]["layout_ms"] = 128.0;  // +6.7%
  EXPECT_TRUE(diff_runs(old_run, new_run, {}).regressions.empty()) << format_diff(diff_runs(old_run, new_run, {}));

  DiffThresholds strict;
  strict.max_rel_l2_growth = 1.5;
  strict.max_slowdown = 0.05;
  const DiffResult d = diff_runs(old_run, new_run, strict);
  EXPECT_TRUE(has_line(d.regressions, "layout tp, layer 1", "x1.75")) << format_diff(d);
  EXPECT_TRUE(has_line(d.regressions, "layout tp", "layout_ms")) << format_diff(d);
  EXPECT_FALSE(mentions(d.regressions, "layout tp, layer 0")) << format_diff(d);
}

TEST(DiffRuns, MissingLayoutOrLayerIsARegressionNewOneIsInfo) {
  json old_run = fixture("check_old.json");
  json new_run = old_run;
  new_run["layouts"].erase(1);
  new_run["layouts"][0]["layers"].erase(3);
  json added = old_run["layouts"][2];
  added["layout"] = "dense-tp-attn";
  new_run["layouts"].push_back(added);
  const DiffResult d = diff_runs(old_run, new_run, {});
  EXPECT_TRUE(has_line(d.regressions, "layout cp-fused-moe", "in the old run, missing in the new")) << format_diff(d);
  EXPECT_TRUE(has_line(d.regressions, "layout tp, layer 3", "missing in the new")) << format_diff(d);
  EXPECT_TRUE(has_line(d.info, "layout dense-tp-attn", "new")) << format_diff(d);
  EXPECT_FALSE(mentions(d.regressions, "layout dense-tp-attn"));
}

TEST(DiffRuns, NonFiniteLayerIsARegression) {
  json old_run = fixture("check_old.json");
  json new_run = old_run;
  layer(new_run, 2, 0)["rel_l2"] = nullptr;  // how NaN is written to JSON
  layer(new_run, 2, 0)["finite"] = false;
  layer(new_run, 2, 0)["pass"] = false;
  const DiffResult d = diff_runs(old_run, new_run, {});
  EXPECT_TRUE(has_line(d.regressions, "layout dp-attn-ar, layer 0", "non-finite")) << format_diff(d);
}

TEST(DiffRuns, SchemaMismatchNamesBothValues) {
  const json check = fixture("check_old.json");
  json other = check;
  other["schema"] = "layoutbench.run/2";
  std::string e = error_of(check, other);
  EXPECT_NE(e.find("'layoutbench.run/1'"), std::string::npos) << e;
  EXPECT_NE(e.find("'layoutbench.run/2'"), std::string::npos) << e;

  other.erase("schema");
  e = error_of(other, check);
  EXPECT_NE(e.find("old run has no \"schema\" field"), std::string::npos) << e;
  EXPECT_NE(e.find("new run has schema 'layoutbench.run/1'"), std::string::npos) << e;

  e = error_of(check, fixture("collectives.json"));
  EXPECT_NE(e.find("'check'"), std::string::npos) << e;
  EXPECT_NE(e.find("'collectives'"), std::string::npos) << e;
}

TEST(DiffRuns, DifferentModelsOrDtypesAreNotCompared) {
  const json check = fixture("check_old.json");
  json other = check;
  other["model"] = {{"name", "some-other-model"}};
  std::string e = error_of(check, other);
  EXPECT_NE(e.find("different models"), std::string::npos) << e;
  EXPECT_NE(e.find("'some-other-model'"), std::string::npos) << e;
  other = check;
  other["dtype"] = "f16";
  e = error_of(check, other);
  EXPECT_NE(e.find("different dtypes"), std::string::npos) << e;
}

TEST(DiffRuns, CollectivesSlowerRowsWrongElementsAndMissingRows) {
  const json old_run = fixture("collectives.json");
  json new_run = old_run;
  json& rows = new_run["rows"];
  rows[0]["time_us"] = rows[0]["time_us"].get<double>() * 1.5;
  rows[0]["busbw_GBps"] = rows[0]["busbw_GBps"].get<double>() / 1.5;
  rows[1]["wrong"] = 3;
  rows[2]["time_us"] = rows[2]["time_us"].get<double>() * 0.5;
  rows[2]["busbw_GBps"] = rows[2]["busbw_GBps"].get<double>() * 2;
  rows.erase(3);
  const DiffResult d = diff_runs(old_run, new_run, {});
  const std::string all = format_diff(d);
  EXPECT_TRUE(has_line(d.regressions, "all_reduce balanced bf16 1048576 B @world", "busbw")) << all;
  EXPECT_TRUE(has_line(d.regressions, "all_reduce balanced bf16 1048576 B @world", "(+50.0%)")) << all;
  EXPECT_TRUE(has_line(d.regressions, "all_reduce balanced bf16 16777216 B @world", "wrong elements 0 -> 3")) << all;
  EXPECT_TRUE(has_line(d.improvements, "reduce_scatterv grouped skewed bf16 1048576 B @world", "busbw")) << all;
  EXPECT_TRUE(has_line(d.regressions, "reduce_scatterv grouped skewed bf16 16777216 B @world", "missing")) << all;
  EXPECT_EQ(d.regressions.size(), 3u) << all;
}

TEST(DiffRuns, AutoPickIsPartOfTheResultNotOfTheRow) {
  json old_run = fixture("collectives.json");
  json new_run = old_run;
  old_run["rows"][2]["algo"] = "auto:grouped";
  new_run["rows"][2]["algo"] = "auto:padded";
  const DiffResult d = diff_runs(old_run, new_run, {});
  EXPECT_FALSE(d.regressed()) << format_diff(d);
  EXPECT_TRUE(has_line(d.info, "reduce_scatterv auto skewed bf16 1048576 B @world", "auto:grouped -> auto:padded"))
      << format_diff(d);
}

TEST(DiffRuns, ReferenceThroughput) {
  const json old_run = fixture("reference.json");
  json new_run = old_run;
  new_run["metrics"]["prefill_tokens_per_s"] = 8000.0;  // -21.9%
  DiffResult d = diff_runs(old_run, new_run, {});
  EXPECT_TRUE(has_line(d.regressions, "prefill", "tokens/s 10240 -> 8000 (-21.9%)")) << format_diff(d);
  new_run["metrics"]["prefill_tokens_per_s"] = 10000.0;  // -2.3%: noise
  EXPECT_FALSE(diff_runs(old_run, new_run, {}).regressed());
  new_run["metrics"]["prefill_tokens_per_s"] = 12000.0;
  d = diff_runs(old_run, new_run, {});
  EXPECT_TRUE(has_line(d.improvements, "prefill", "tokens/s")) << format_diff(d);
}

TEST(DiffRuns, UnknownSubcommandIsOnlyInfo) {
  const DiffResult d = diff_runs(fixture("unknown_subcommand.json"), fixture("unknown_subcommand.json"), {});
  EXPECT_FALSE(d.regressed());
  EXPECT_TRUE(has_line(d.info, "subcommand", "no comparison rules")) << format_diff(d);
}

TEST(DiffRuns, ReadRunFileNamesTheFile) {
  test::TempDir dir;
  auto message = [](const std::string& path) {
    try {
      read_run_file(path);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string missing = dir / "absent.json";
  EXPECT_NE(message(missing).find(missing + ": no such file"), std::string::npos) << message(missing);
  write_text(dir / "broken.json", "{\"schema\": \"layoutbench.run/1\", ");
  EXPECT_NE(message(dir / "broken.json").find(dir / "broken.json" + ": not valid JSON"), std::string::npos)
      << message(dir / "broken.json");
  write_text(dir / "list.json", "[1, 2]");
  EXPECT_NE(message(dir / "list.json").find("not a run record"), std::string::npos) << message(dir / "list.json");
}

// ---- the commands, through the CLI (needs `report` and `diff` registered in harness/cli/cli.cpp) ----

TEST(DiffCli, ExitCodes) {
  const std::string old_path = test::fixture_dir("reports/check_old.json");
  const std::string new_path = test::fixture_dir("reports/check_new.json");
  test::CliResult r = test::run_cli({"diff", old_path, old_path});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = test::run_cli({"diff", old_path, new_path});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("regressions (6):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layout cp-fused-moe, layer 2: passed, now fails"), std::string::npos) << r.out;
  r = test::run_cli({"diff", old_path, new_path, "--max-rel-l2-growth", "100", "--max-slowdown", "0.5"});
  EXPECT_EQ(r.code, 1) << r.out;  // the failing layers and the missing layout remain
  EXPECT_NE(r.out.find("regressions (4):"), std::string::npos) << r.out;
  r = test::run_cli({"diff", old_path, test::fixture_dir("reports/collectives.json")});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("'collectives'"), std::string::npos) << r.err;
  r = test::run_cli({"diff", old_path, "no/such/run.json"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("no/such/run.json"), std::string::npos) << r.err;
}

TEST(ReportCli, WritesOnePage) {
  test::TempDir dir;
  const std::string html = dir / "report.html";
  test::CliResult r = test::run_cli({"report", test::fixture_dir("reports/check_new.json"),
                                     test::fixture_dir("reports/collectives.json"), "-o", html});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(read_text(html).find("</html>"), std::string::npos);
  r = test::run_cli({"report", dir / "missing.json", "-o", dir / "other.html"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(dir / "missing.json"), std::string::npos) << r.err;
  EXPECT_FALSE(is_regular_file(dir / "other.html"));
}

// ---- the HTML page ----------------------------------------------------------------------------

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::string all_kinds_html() {
  return render_report_html({fixture("check_new.json"), fixture("collectives.json"), fixture("reference.json"),
                             fixture("unknown_subcommand.json")});
}

TEST(ReportHtml, RendersEveryRecordKind) {
  const std::string html = all_kinds_html();
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  for (int i = 1; i <= 4; ++i) EXPECT_NE(html.find("id=\"run-" + std::to_string(i) + "\""), std::string::npos);
  // Headers.
  EXPECT_NE(html.find("4567def"), std::string::npos);
  EXPECT_NE(html.find("2026-11-25T10:00:00Z"), std::string::npos);
  EXPECT_NE(html.find("NVIDIA H200 (143155 MiB)"), std::string::npos);
  // check: the first divergence, a highlighted failing row, collectives per layout, layout times.
  EXPECT_NE(html.find("First divergence"), std::string::npos);
  EXPECT_NE(html.find("moe_out"), std::string::npos);
  EXPECT_NE(html.find("64-127"), std::string::npos);
  EXPECT_EQ(count(html, "<tr class=\"fail\">"), 2u);  // cp-fused-moe layers 2 and 3
  EXPECT_NE(html.find("3.100e-03"), std::string::npos);
  EXPECT_NE(html.find("reduce_scatter@moe"), std::string::npos);
  EXPECT_NE(html.find("Layout time"), std::string::npos);
  // collectives: nccl-tests columns and busbw bars.
  for (const char* column : {"size (B)", "count", "type", "time (us)", "algbw (GB/s)", "busbw (GB/s)", "#wrong"})
    EXPECT_NE(html.find(std::string("<th>") + column + "</th>"), std::string::npos) << column;
  EXPECT_NE(html.find("Bus bandwidth"), std::string::npos);
  EXPECT_NE(html.find("reduce_scatterv grouped skewed 16 MiB"), std::string::npos);
  // reference: the summary.
  EXPECT_NE(html.find("prefill tokens/s"), std::string::npos);
  EXPECT_NE(html.find("10240"), std::string::npos);
  // anything else: its fields as they are, nested tables.
  EXPECT_NE(html.find("<th>min_cosine</th><td>0.999</td>"), std::string::npos);
  EXPECT_NE(html.find("<th>worst_cosine</th>"), std::string::npos);
}

TEST(ReportHtml, CheckPlotHasALinePerLayoutAndADashedThreshold) {
  const std::string html = render_report_html({fixture("check_old.json")});
  EXPECT_EQ(count(html, "<svg"), 1u + 1u + 3u);  // the plot, layout times, collectives of each layout
  EXPECT_EQ(count(html, "<polyline"), 3u + 1u);  // three layouts and the threshold
  EXPECT_NE(html.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(html.find(">threshold</text>"), std::string::npos);
  for (const char* name : {">tp</text>", ">cp-fused-moe</text>", ">dp-attn-ar</text>"})
    EXPECT_NE(html.find(name), std::string::npos) << name;  // the legend
  EXPECT_NE(html.find(">1e-5</text>"), std::string::npos);  // log axis, decades
  EXPECT_NE(html.find(">1e-7</text>"), std::string::npos);
}

// bf16 records judge every row: the layer table gains the row columns, and the rows past their
// bound are listed with where they sit in the batch and on which ranks.
TEST(ReportHtml, ShowsTheRowsPastTheirBound) {
  json check = fixture("check_new.json");
  EXPECT_EQ(render_report_html({check}).find("Rows past their bound"), std::string::npos);
  json& layout = check["layouts"][0];
  for (json& l : layout["layers"])
    l.update({{"rows_judged", 128}, {"rows_past_bound", 0}, {"worst_row_ratio", 0.25}, {"flips", 0},
              {"worst_rows", json::array()}});
  json past = {{"op", "layer_out"}, {"token", 45}, {"sequence", 1}, {"position", 8}, {"ranks", {1}},
               {"rel_l2", 0.31}, {"bound", 0.05}, {"ratio", 6.2}};
  json within = past;
  within["token"] = 46, within["ratio"] = 0.5;
  layer(check, 0, 2).update({{"rows_past_bound", 1}, {"worst_row_ratio", 6.2}, {"worst_rows", {past, within}},
                             {"pass", false}});
  past["op"] = "router_logits", past["ratio"] = nullptr;  // an infinite ratio: JSON has no inf
  layout["ops"] = {{{"layer", 3}, {"op", "router_logits"}, {"rows_past_bound", 2}, {"worst_rows", {past}}}};
  layout["worst_row_ratio"] = 6.2;
  const std::string html = render_report_html({check});
  for (const char* column : {"flips", "rows past bound", "worst row / bound"})
    EXPECT_NE(html.find(std::string("<th>") + column + "</th>"), std::string::npos) << column;
  EXPECT_NE(html.find("Rows past their bound"), std::string::npos);
  EXPECT_NE(html.find("<td>seq 1 pos 8</td><td>45</td><td>1</td><td>3.100e-01</td><td>5.000e-02</td><td>6.20</td>"),
            std::string::npos)
      << html;
  EXPECT_EQ(html.find("<td>46</td>"), std::string::npos);  // within its bound: not listed
  EXPECT_NE(html.find("<td>3</td><td>router_logits</td><td>2</td>"), std::string::npos);
  EXPECT_NE(html.find("<th>worst row / bound</th><td>6.200</td>"), std::string::npos);
}

TEST(ReportHtml, IsSelfContained) {
  const std::string html = all_kinds_html();
  for (const char* needle : {"http://", "https://", "<script", "<link", "<img", "@import", "url("})
    EXPECT_EQ(html.find(needle), std::string::npos) << needle;
  // The only links are to anchors in the page.
  EXPECT_EQ(count(html, "href=\""), count(html, "href=\"#"));
  EXPECT_EQ(count(html, "src="), 0u);
}

TEST(ReportHtml, EscapesRecordText) {
  const std::string html = render_report_html({fixture("check_script_injection.json")});
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;layout&#39;)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(html_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

TEST(ReportHtml, OddRecordsStillRender) {
  json check = fixture("check_old.json");
  check["layouts"][0]["layers"][0]["rel_l2"] = nullptr;  // NaN
  check["layouts"][0]["layers"][1]["rel_l2"] = 0.0;      // bit-identical
  check["layouts"][1]["pass"] = "yes";                   // wrong type
  check["layouts"][2].erase("layers");
  check.erase("thresholds");
  json no_layouts = {{"schema", kRunSchema}, {"subcommand", "check"}};
  const std::string html =
      render_report_html({check, no_layouts, json::object(), json::array({1, 2}), json{{"subcommand", "collectives"}}});
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_NE(html.find("Not a run record"), std::string::npos);
  EXPECT_NE(html.find("(not recorded)"), std::string::npos);
}

// The records committed under results/ (written by the CLI or parsed from a run's log).
TEST(ReportHtml, RendersTheCommittedResults) {
  const std::string results = join_path(LB_FIXTURE_DIR, "../../results");
  std::vector<json> runs;
  for (const char* path : {"layouts/check_qwen3-30b-a3b_2gpu_bf16.json", "collectives/collectives_2gpu.json",
                           "reference/reference_deepseek-v3_4L_4096tok_bf16.json",
                           "reference/reference_bf16_gpu_vs_f32_cpu.json"})
    if (is_regular_file(join_path(results, path))) runs.push_back(read_run_file(join_path(results, path)));
  if (runs.empty()) GTEST_SKIP() << "no records under " << results;
  const std::string html = render_report_html(runs);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos);
}

std::string find_on_path(const std::vector<std::string>& names) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    for (const auto& name : names) {
      const std::string candidate = join_path(dir.empty() ? "." : dir, name);
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  return "";
}

uint32_t big_endian(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// A browser draws the page. The PNG is checked by its structure (signature, IHDR of the window's
// size, chunks up to IEND) and its size: 1200x2000 of one color compresses to a few KB, so more than
// 10 KB means something was drawn.
TEST(ReportHtml, RendersInHeadlessChromium) {
  const std::string chromium = find_on_path({"chromium", "chromium-browser"});
  if (chromium.empty()) GTEST_SKIP() << "no chromium or chromium-browser on PATH";
  test::TempDir dir;
  write_text(dir / "report.html", all_kinds_html());
  const std::string png = dir / "report.png";
  const std::string command = "timeout 180 '" + chromium +
                              "' --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --hide-scrollbars "
                              "--user-data-dir='" + dir / "profile" + "' --screenshot='" + png +
                              "' --window-size=1200,2000 'file://" + dir / "report.html" + "' > '" + dir / "log" +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_EQ(status, 0) << command << "\n" << read_text(dir / "log");
  const std::string bytes = read_text(png);
  ASSERT_GT(bytes.size(), 10u * 1024) << png << "\n" << read_text(dir / "log");
  ASSERT_EQ(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n"), 0);
  ASSERT_EQ(bytes.compare(12, 4, "IHDR"), 0);
  EXPECT_EQ(big_endian(bytes, 16), 1200u);
  EXPECT_EQ(big_endian(bytes, 20), 2000u);
  size_t at = 8;
  std::string last;
  while (at + 12 <= bytes.size()) {  // length, type, data, CRC
    last = bytes.substr(at + 4, 4);
    at += 12 + big_endian(bytes, at);
  }
  EXPECT_EQ(last, "IEND");
  EXPECT_EQ(at, bytes.size());
}

}  // namespace
}  // namespace lb
