#pragma once
// Which layouts a subcommand runs (`--layout tp,cp-fused-moe` or `all`) and the parallel config
// of each: the layout's default for the rank count with the explicitly given size flags applied.
#include "harness/cli/parallel_flags.h"
#include "layouts/layout.h"

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace lb {

// "a,b,,c" -> {a, b, c}
std::vector<std::string> comma_list(const std::string& s);

struct SelectedLayout {
  const LayoutSpec* spec = nullptr;
  ParallelConfig parallel;
};

// InputError on an unknown name, a config the layout cannot take, or --tp other than `ranks`.
// `sub` tells which size flags were given.
std::vector<SelectedLayout> select_layouts(const std::string& names, int ranks, const ModelConfig& config,
                                           const ParallelFlags& flags, const CLI::App& sub);

}  // namespace lb
