#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench check`: a layout (or all) against the single-device reference, layer by layer.
std::function<int()> add_check_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
