#pragma once
// The collectives benchmark behind `layoutbench collectives`: one row per op, algorithm, row split
// and size, in the nccl-tests columns, with a correctness check on every row and, on NCCL, the
// same NCCL op called directly in the same run as the yardstick.
#include "harness/runtime/communicator.h"
#include "harness/runtime/rank_context.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace lb {

struct CollectiveRow;

struct CollectiveBenchOptions {
  std::vector<std::string> ops;     // all_reduce all_gather reduce_scatter all_gatherv reduce_scatterv all_to_allv broadcast
  std::vector<int64_t> sizes;       // bytes (see CollectiveRow::bytes)
  torch::ScalarType dtype = torch::kBFloat16;
  int warmup = 5;
  int iters = 20;             // at least this many launches per timed batch
  double min_batch_ms = 5;    // and enough launches for a batch to last this long
  int repeats = 5;            // timed batches; rows report the median
  std::vector<std::string> splits;  // uneven ops: balanced | skewed (rank r gets r+1 parts) | zero (rank 0 gets none)
  std::vector<VarAlgo> algos;       // uneven ops: Grouped, Padded, Auto
  int64_t row_elems = 2048;         // elements per row (a hidden state) for the row-based ops
  bool direct = true;               // also time the op called straight on NCCL
  // Called on every rank after each finished row (a record written as the benchmark goes).
  std::function<void(const CollectiveRow&)> on_row;
};

struct CollectiveRow {
  std::string op, algo, split, type, group;
  int group_size = 0;
  int64_t bytes = 0;   // all_reduce/broadcast: buffer; gathers: output; reductions: input; all_to_allv: per-rank send
  int64_t count = 0;   // elements in `bytes`
  int iters = 0;       // launches per timed batch
  double time_us = 0;  // median over repeats of the slowest rank's mean time per launch in a batch
  double algbw = 0, busbw = 0;  // GB/s as nccl-tests: algbw = bytes / time, busbw = algbw * op factor
  int64_t wrong = 0;   // mismatching elements over all ranks
  double direct_time_us = 0, direct_busbw = 0;  // 0 when not measured
};

std::vector<std::string> all_collective_ops();
const std::vector<std::string>& uneven_ops();  // the ops that take row splits and algorithms

// Collective over the ranks of `comm`'s world: every rank calls it; every rank gets the rows.
std::vector<CollectiveRow> run_collective_bench(RankContext& ctx, Communicator& comm,
                                                const CollectiveBenchOptions& options);

std::string format_collective_rows(const std::vector<CollectiveRow>& rows);
nlohmann::json to_json(const CollectiveRow& row);

// Row counts per rank summing to `total` for a named split.
std::vector<int64_t> split_rows(const std::string& split, int64_t total, int ranks);

}  // namespace lb
