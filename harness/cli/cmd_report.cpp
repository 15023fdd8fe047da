#include "harness/cli/cmd_report.h"

#include "harness/cli/flag_checks.h"
#include "harness/runtime/atomic_file.h"
#include "harness/runtime/errors.h"
#include "reports/report_html.h"
#include "reports/run_record.h"

#include <iostream>
#include <memory>

namespace lb {

std::function<int()> add_report_command(CLI::App& app, const std::vector<std::string>& /*argv*/) {
  struct Args {
    std::vector<std::string> runs;
    std::string output = "report.html";
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("report", "Render run records (check, collectives, reference) as one "
                                               "self-contained HTML page with tables and SVG charts");
  sub->add_option("runs", a->runs, "Run records written by --json")->required();
  sub->add_option("-o,--output", a->output, "The HTML file to write");
  return [a] {
    // Every record is read before the page is written: a bad file leaves no half report behind.
    std::vector<nlohmann::json> runs;
    for (const auto& path : a->runs) runs.push_back(read_run_file(path));
    const std::string html = render_report_html(runs);
    std::ofstream out(a->output);
    if (!out) throw InputError(a->output + ": cannot write");
    out << html;
    if (!out) throw InputError(a->output + ": write failed");
    std::cout << "report of " << runs.size() << " run(s) written to " << a->output << "\n";
    return 0;
  };
}

}  // namespace lb
