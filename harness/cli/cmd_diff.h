#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench diff OLD.json NEW.json`: regressions and improvements between two run records;
// exits 1 on a regression, 2 on records that cannot be compared.
std::function<int()> add_diff_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
