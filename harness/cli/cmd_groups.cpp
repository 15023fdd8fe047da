#include "harness/cli/cmd_groups.h"

#include "harness/cli/parallel_flags.h"

#include <iostream>
#include <memory>

namespace lb {

std::function<int()> add_groups_command(CLI::App& app) {
  struct Args {
    ParallelFlags flags;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("groups", "Print every rank's coordinates and process groups for a parallel "
                                               "config (invalid configs are rejected naming the rule)");
  add_parallel_flags(*sub, a->flags);
  sub->add_flag("--json", a->json, "Print the table as JSON instead of text");
  return [a] {
    ParallelConfig p = a->flags.config();
    if (a->json) std::cout << group_table_json(p).dump(2) << "\n";
    else std::cout << format_group_table(p);
    return 0;
  };
}

}  // namespace lb
