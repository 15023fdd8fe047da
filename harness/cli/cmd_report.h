#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench report RUN.json... -o report.html`: one self-contained HTML page from run records.
std::function<int()> add_report_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
