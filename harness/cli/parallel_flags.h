#pragma once
// The parallel-size flags shared by every multi-rank subcommand (groups, collectives, check, bench).
#include "harness/runtime/parallel_config.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lb {

struct ParallelFlags {
  int tp = 0;  // 0: take the rank count (--ranks / --gpus)
  int dp = 1;
  int attn_cp = 1;
  int moe_dp = 1;
  int moe_ep = 1;
  std::string moe_dense_tp = "none";
  int nnodes = 1;

  // Builds and validates the config; `world` fills tp when --tp was not given.
  ParallelConfig config(int world = 0) const;
};

void add_parallel_flags(CLI::App& sub, ParallelFlags& flags);

}  // namespace lb
