#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench bench-moe`: the fused MoE experts against the plain LibTorch path over token
// counts, with the device's measured matmul peak and memory bandwidth for scale.
std::function<int()> add_bench_moe_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
