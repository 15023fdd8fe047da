#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench groups`: prints the rank -> process-group table of a parallel config.
std::function<int()> add_groups_command(CLI::App& app);

}  // namespace lb
