#include "harness/cli/cli.h"

#include "harness/cli/cmd_check.h"
#include "harness/cli/cmd_gsm8k.h"
#include "harness/cli/cmd_bench.h"
#include "harness/cli/cmd_bench_layer.h"
#include "harness/cli/cmd_bench_moe.h"
#include "harness/cli/cmd_collectives.h"
#include "harness/cli/cmd_diff.h"
#include "harness/cli/cmd_groups.h"
#include "harness/cli/cmd_reference.h"
#include "harness/cli/cmd_report.h"
#include "harness/cli/cmd_suite.h"
#include "harness/cli/flag_checks.h"
#include "harness/runtime/error_text.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/fault_injection.h"
#include "harness/runtime/rank_threads.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

namespace lb {

namespace {

// --inject-fault joins every subcommand that starts ranks (the ones with --timeout).
void add_fault_flag(CLI::App& app, std::string& spec) {
  for (CLI::App* sub : app.get_subcommands({}))
    if (sub->get_option_no_throw("--timeout"))
      sub->add_option("--inject-fault", spec,
                      "For tests: make a rank crash, hang or be slow at its N-th call of a collective, "
                      "KIND:RANK:OP:N (crash:1:all_reduce:3, hang:0:any:5, slow:1:all_gatherv:1:1500 sleeps 1500 ms)");
}

int run_parsed(const std::vector<std::pair<CLI::App*, std::function<int()>>>& commands, const std::string& fault) {
  try {
    set_fault_injection(fault.empty() ? std::nullopt : std::optional<FaultSpec>(parse_fault_spec(fault)));
    for (auto& [sub, action] : commands)
      if (sub->parsed()) {
        check_outputs_differ_from_inputs(*sub);
        return action();
      }
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << error_text(e) << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace

int layoutbench_main(const std::vector<std::string>& args) {
  CLI::App app{"layoutbench: is a parallel inference layout of an MoE model the same model, where does it "
               "diverge, and how fast is it?"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands;
  // Each add_* registers its subcommand, so it must run before the subcommand is looked up.
  auto add = [&](const char* name, std::function<int()> action) {
    commands.push_back({app.get_subcommand(name), std::move(action)});
  };
  add("reference", add_reference_command(app, args));
  add("groups", add_groups_command(app));
  add("collectives", add_collectives_command(app, args));
  add("check", add_check_command(app, args));
  add("gsm8k", add_gsm8k_command(app, args));
  add("bench", add_bench_command(app, args));
  add("bench-moe", add_bench_moe_command(app, args));
  add("bench-layer", add_bench_layer_command(app, args));
  add("report", add_report_command(app, args));
  add("diff", add_diff_command(app, args));
  add("suite", add_suite_command(app, args));
  std::string fault;
  add_fault_flag(app, fault);

  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(int(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    // --help (exit code 0) prints itself; any other parse error is bad input, one line, exit 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  }
  const int left_behind = rank_threads_left_behind();
  const int code = run_parsed(commands, fault);
  set_fault_injection(std::nullopt);
  if (rank_threads_left_behind() > left_behind) {
    // A rank thread left behind may still use the frames it was given, so nothing may unwind under
    // it: the records are written already (by the command's error path); end the process here.
    std::cout << std::flush;
    std::cerr << std::flush;
    std::fflush(nullptr);
    std::_Exit(code);
  }
  return code;
}

}  // namespace lb
