#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench reference`: runs the single-device reference and prints a per-layer summary.
// Returns the action to run once the command line has been parsed.
std::function<int()> add_reference_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
