#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

// `layoutbench bench-layer`: one Qwen3-MoE decoder layer, step by step, on one device, with
// the plain and the fused kernels: where a layer's time goes.
std::function<int()> add_bench_layer_command(CLI::App& app, const std::vector<std::string>& argv);

}  // namespace lb
