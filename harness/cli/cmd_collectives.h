#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench collectives`: every collective over sizes, in nccl-tests columns, checked on every
// row and held against the same NCCL op called directly.
std::function<int()> add_collectives_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
