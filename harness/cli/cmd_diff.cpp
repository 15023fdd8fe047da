#include "harness/cli/cmd_diff.h"

#include "harness/cli/flag_checks.h"
#include "reports/run_diff.h"

#include <iostream>
#include <memory>

namespace lb {

std::function<int()> add_diff_command(CLI::App& app, const std::vector<std::string>& /*argv*/) {
  struct Args {
    std::string old_run, new_run;
    DiffThresholds thresholds;
    bool allow_different_inputs = false;
  };
  auto a = std::make_shared<Args>();
  DiffThresholds& t = a->thresholds;
  CLI::App* sub = app.add_subcommand("diff", "Compare two run records of one subcommand: list regressions past the "
                                             "thresholds (exit 1) and improvements");
  sub->add_option("old", a->old_run, "The baseline run record")->required()->check(input_file());
  sub->add_option("new", a->new_run, "The run record to judge")->required()->check(input_file());
  sub->add_option("--max-rel-l2-growth", t.max_rel_l2_growth,
                  "A layer's relative L2 may grow by this factor before it is a regression")
      ->check(finite_at_least(1));
  sub->add_option("--rel-l2-floor", t.rel_l2_floor, "Relative L2 growth below this value is not a regression")
      ->check(finite_at_least(0));
  sub->add_option("--max-slowdown", t.max_slowdown,
                  "Fraction by which a time (layout_ms, time_us) may grow or a rate (tokens/s) may drop")
      ->check(finite_at_least(0));
  sub->add_option("--max-busbw-drop", t.max_busbw_drop, "Fraction by which a collective's busbw may drop")
      ->check(finite_at_least(0));
  sub->add_flag("--allow-different-inputs", a->allow_different_inputs,
                "Compare records made from different tokens, seeds, rank counts or parallel configs (listed as info) "
                "instead of refusing them");
  return [a] {
    const DiffThresholds& t = a->thresholds;  // their ranges are checked by the parser (flag_checks.h)
    const nlohmann::json old_run = read_run_file(a->old_run);
    const nlohmann::json new_run = read_run_file(a->new_run);
    const DiffResult d = diff_runs(old_run, new_run, t,
                                   a->allow_different_inputs ? DiffInputs::MayDiffer : DiffInputs::MustMatch);
    auto commit = [](const nlohmann::json& run) {
      return run.contains("commit") && run["commit"].is_string() ? run["commit"].get<std::string>() : "?";
    };
    std::cout << "old: " << a->old_run << " (commit " << commit(old_run) << ")\n"
              << "new: " << a->new_run << " (commit " << commit(new_run) << ")\n"
              << format_diff(d);
    return d.regressed() ? 1 : 0;
  };
}

}  // namespace lb
