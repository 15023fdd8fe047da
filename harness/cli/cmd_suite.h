#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench suite SUITE.json --out DIR`: the suite's runs, each a child process writing its
// record into DIR/<date>_<commit>/, an index (suite.json), one report of them all, and a diff of
// every run against the previous run folder in DIR. Exit 1 when a run failed or regressed.
std::function<int()> add_suite_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
