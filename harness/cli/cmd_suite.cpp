#include "harness/cli/cmd_suite.h"

#include "harness/cli/flag_checks.h"
#include "harness/cli/suite_child.h"
#include "harness/cli/suite_spec.h"
#include "harness/runtime/atomic_file.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "reports/record_lint.h"
#include "reports/report_history.h"
#include "reports/report_html.h"
#include "reports/run_diff.h"
#include "reports/run_record.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

namespace lb {

namespace {

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    throw InputError("--out: cannot create " + path + ": " + std::strerror(errno));
  if (!is_directory(path)) throw InputError("--out: " + path + " exists and is not a folder");
}

// <UTC date>_<commit>, short enough to read; "-dirty" kept, since such a run cannot be rebuilt.
std::string folder_name(const std::string& commit) {
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  return std::string(date) + "_" + commit.substr(0, std::min<size_t>(commit.find('-'), 10)) +
         (is_dirty_commit(commit) ? "-dirty" : "");
}

std::string unused_folder(const std::string& out, const std::string& name) {
  std::string path = out + "/" + name;
  for (int i = 2; is_directory(path); ++i) path = out + "/" + name + "-" + std::to_string(i);
  return path;
}

std::string base_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// The record of a run, or a null json when it wrote none or not one of ours.
nlohmann::json read_record(const std::string& path) {
  if (!is_regular_file(path)) return nullptr;
  try {
    nlohmann::json run = read_run_file(path);
    return schema_problem(run).empty() ? run : nlohmann::json();
  } catch (const InputError&) {
    return nullptr;
  }
}

// Every run of the new folder against the same run of the old one, when both wrote a record.
nlohmann::json diff_against(const std::string& old_folder, const std::string& new_folder,
                            const std::vector<SuiteRun>& runs, const DiffThresholds& t, std::ostream& text) {
  nlohmann::json out = {{"against", base_name(old_folder)}, {"regressions", 0}, {"runs", nlohmann::json::array()}};
  for (const SuiteRun& run : runs) {
    const nlohmann::json old_run = read_record(old_folder + "/" + run.name + ".json");
    const nlohmann::json new_run = read_record(new_folder + "/" + run.name + ".json");
    nlohmann::json entry = {{"name", run.name}};
    text << "== " << run.name << "\n";
    if (old_run.is_null() || new_run.is_null()) {
      entry["note"] = old_run.is_null() ? "no record in the previous folder" : "no record in this folder";
      if (new_run.is_null() && !old_run.is_null()) {
        entry["regressions"] = nlohmann::json::array({"the run wrote no record"});
        out["regressions"] = out["regressions"].get<int>() + 1;
      }
      text << entry["note"].get<std::string>() << "\n";
      out["runs"].push_back(entry);
      continue;
    }
    try {
      const DiffResult d = diff_runs(old_run, new_run, t);
      entry["regressions"] = nlohmann::json::array();
      for (const DiffLine& l : d.regressions) entry["regressions"].push_back(l.subject + ": " + l.change);
      entry["improvements"] = d.improvements.size();
      out["regressions"] = out["regressions"].get<int>() + int(d.regressions.size());
      text << format_diff(d);
    } catch (const InputError& e) {  // another model, other inputs: not the same measurement
      entry["note"] = std::string("not compared: ") + e.what();
      text << entry["note"].get<std::string>() << "\n";
    }
    out["runs"].push_back(entry);
  }
  return out;
}

// What the suite adds above the records' own sections: each run's status and its regressions.
std::string summary_html(const nlohmann::json& index) {
  std::ostringstream s;
  s << "<section class=\"run\"><h2>Suite " << html_escape(index.value("suite", "")) << ", "
    << html_escape(index.value("folder", "")) << "</h2>\n<table><tr><th>run</th><th>exit</th><th>wall s</th>"
    << "<th>regressions against " << html_escape(index.contains("diff") ? index["diff"].value("against", "") : "-")
    << "</th></tr>\n";
  for (const nlohmann::json& r : index["runs"]) {
    std::string regressions;
    if (index.contains("diff"))
      for (const nlohmann::json& d : index["diff"]["runs"])
        if (d.value("name", "") == r.value("name", "") && d.contains("regressions"))
          for (const nlohmann::json& line : d["regressions"]) regressions += html_escape(line.get<std::string>()) + "<br>";
    const bool failed = r.value("exit_code", 0) != 0;
    s << "<tr" << (failed || !regressions.empty() ? " style=\"background:#fdd\"" : "") << "><td>"
      << html_escape(r.value("name", "")) << "</td><td>" << r.value("exit_code", 0)
      << (failed ? " FAILED: " + html_escape(r.value("error", "")) : "") << "</td><td>" << std::fixed
      << std::setprecision(1) << r.value("wall_s", 0.0) << "</td><td>" << (regressions.empty() ? "-" : regressions)
      << "</td></tr>\n";
  }
  s << "</table></section>\n";
  return s.str();
}

}  // namespace

std::function<int()> add_suite_command(CLI::App& app, const std::vector<std::string>& argv) {
  struct Args {
    std::string suite, out, shared;
    DiffThresholds thresholds;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("suite", "Run a declared list of runs (check, bench, gsm8k, ...) into a dated "
                                              "folder, with an index, one report, and a diff against the last run");
  sub->add_option("suite", a->suite, "The suite file (suites/*.json)")->required()->check(input_file());
  sub->add_option("--out", a->out, "The folder that keeps every night's run folder")->required();
  sub->add_option("--shared", a->shared,
                  "The shared datasets and tokenizers, for {shared} in the suite's args (default: ../shared beside "
                  "the repository holding the suite file)");
  sub->add_option("--max-slowdown", a->thresholds.max_slowdown,
                  "Fraction by which a time may grow or a rate drop against the previous run")
      ->check(finite_at_least(0));
  sub->add_option("--max-busbw-drop", a->thresholds.max_busbw_drop,
                  "Fraction by which a collective's busbw may drop against the previous run")
      ->check(finite_at_least(0));
  return [a, argv] {
    const std::string suite_dir = a->suite.find('/') == std::string::npos ? "." : a->suite.substr(0, a->suite.find_last_of('/'));
    const SuiteSpec spec = read_suite(a->suite, a->shared.empty() ? suite_dir + "/../../shared" : a->shared);
    make_dir(a->out);
    const std::vector<std::string> earlier = suite_run_folders(a->out);
    const std::string commit = source_commit();  // two git calls: once for the folder and the index
    const std::string folder = unused_folder(a->out, folder_name(commit));
    make_dir(folder);
    std::string command;
    for (const auto& arg : argv) command += (command.empty() ? "" : " ") + arg;
    nlohmann::json index = {{"schema", kRunSchema}, {"suite", spec.name},        {"command", command},
                            {"commit", commit}, {"folder", base_name(folder)}, {"runs", nlohmann::json::array()}};
    const std::string index_path = folder + "/suite.json";
    write_json(index_path, index);
    int failed = 0;
    for (const SuiteRun& run : spec.runs) {
      std::cout << "suite: " << run.name << " ..." << std::flush;
      const SuiteChildResult r = run_suite_child(run, folder + "/" + run.name + ".json", folder + "/" + run.name + ".log");
      failed += r.exit_code != 0;
      std::cout << (r.exit_code == 0 ? " ok" : " FAILED (exit " + std::to_string(r.exit_code) + ")") << " in "
                << std::fixed << std::setprecision(1) << r.wall_s << " s\n";
      index["runs"].push_back({{"name", run.name}, {"subcommand", run.args[0]}, {"args", run.args},
                               {"record", run.name + ".json"}, {"log", run.name + ".log"}, {"exit_code", r.exit_code},
                               {"wall_s", r.wall_s}, {"timed_out", r.timed_out}, {"error", r.error}});
      write_json(index_path, index);  // a suite ended partway keeps what ran
    }
    int regressions = 0;
    if (!earlier.empty()) {
      std::ostringstream text;
      index["diff"] = diff_against(a->out + "/" + earlier.back(), folder, spec.runs, a->thresholds, text);
      regressions = index["diff"]["regressions"].get<int>();
      write_file_atomically(folder + "/diff.txt", text.str());
      std::cout << "suite: against " << earlier.back() << ": " << regressions << " regression(s) (" << folder
                << "/diff.txt)\n";
    }
    index["exit_code"] = failed || regressions ? 1 : 0;
    write_json(index_path, index);
    std::vector<nlohmann::json> records;
    for (const SuiteRun& run : spec.runs)
      if (nlohmann::json r = read_record(folder + "/" + run.name + ".json"); !r.is_null()) records.push_back(r);
    std::string page = render_report_html(records);
    const size_t body = page.find("<body>");
    page.insert(body == std::string::npos ? 0 : body + 6, summary_html(index));
    write_file_atomically(folder + "/report.html", page);
    write_file_atomically(a->out + "/history.html", render_history_html(a->out));
    std::cout << "suite: " << spec.runs.size() - size_t(failed) << "/" << spec.runs.size() << " runs ok; report "
              << folder << "/report.html, history " << a->out << "/history.html\n";
    return index["exit_code"].get<int>();
  };
}

}  // namespace lb
