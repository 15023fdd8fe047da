#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench bench`: layouts side by side in one process, interleaved: prefill tokens/s,
// decode step latency at several batch sizes, and time and bytes per collective.
std::function<int()> add_bench_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
