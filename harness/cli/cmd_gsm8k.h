#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench gsm8k`: k-shot GSM8K through the reference and every chosen layout; accuracy,
// tokens/s, and each layout's token agreement with the reference.
std::function<int()> add_gsm8k_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
