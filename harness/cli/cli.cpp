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
#include "harness/runtime/errors.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace lb {

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

  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(int(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, action] : commands)
      if (sub->parsed()) return action();
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace lb
