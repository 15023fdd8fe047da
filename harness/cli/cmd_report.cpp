#include "harness/cli/cmd_report.h"

#include "harness/cli/flag_checks.h"
#include "harness/runtime/atomic_file.h"
#include "harness/runtime/errors.h"
#include "reports/record_lint.h"
#include "reports/report_history.h"
#include "reports/report_html.h"
#include "reports/run_record.h"

#include <iostream>
#include <memory>

namespace lb {

std::function<int()> add_report_command(CLI::App& app, const std::vector<std::string>& /*argv*/) {
  struct Args {
    std::vector<std::string> runs;
    std::string output = "report.html";
    std::string history;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("report", "Render run records (check, collectives, reference, bench, gsm8k) as one "
                                               "self-contained HTML page with tables and SVG charts, or with "
                                               "--history every metric across a suite's run folders");
  sub->add_option("runs", a->runs, "Run records written by --json")->check(input_file());
  sub->add_option("--history", a->history,
                  "A suite's --out folder: every metric across its run folders, oldest first (instead of records)");
  sub->add_option("-o,--output", a->output, "The HTML file to write (not one of the records)")->check(output_file());
  return [a] {
    if (!a->history.empty()) {
      if (!a->runs.empty()) throw InputError("report: give run records or --history DIR, not both");
      write_file_atomically(a->output, render_history_html(a->history));
      std::cout << "history of " << a->history << " written to " << a->output << "\n";
      return 0;
    }
    if (a->runs.empty()) throw InputError("report: give run records (RUN.json...) or --history DIR");
    // Every record is read before the page is written: a bad file leaves no half report behind.
    std::vector<nlohmann::json> runs;
    for (const auto& path : a->runs) {
      nlohmann::json run = read_run_file(path);
      if (const std::string problem = schema_problem(run); !problem.empty()) {
        std::cerr << "warning: " << path << ": " << problem << ": not a layoutbench run record, skipped" << std::endl;
        continue;
      }
      for (const std::string& warning : record_warnings(run)) std::cerr << "warning: " << path << ": " << warning << "\n";
      runs.push_back(std::move(run));
    }
    if (runs.empty())
      throw InputError("no run record to report: every input was skipped (see the warnings above)");
    write_file_atomically(a->output, render_report_html(runs));
    std::cout << "report of " << runs.size() << " run(s) written to " << a->output << "\n";
    return 0;
  };
}

}  // namespace lb
