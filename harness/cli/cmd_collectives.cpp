#include "harness/cli/cmd_collectives.h"

#include "harness/cli/flag_checks.h"
#include "harness/bench/collective_bench.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/launch.h"
#include "harness/cli/parallel_flags.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <iostream>
#include <memory>
#include <sstream>

namespace lb {

namespace {

struct CollectivesArgs {
  std::string backend;
  int ranks = 0;
  ParallelFlags parallel;
  std::string group = "world";
  std::string ops = "all_reduce,all_gather,reduce_scatter,all_gatherv,reduce_scatterv,all_to_allv,broadcast";
  std::string sizes = "1M,4M,16M,64M,256M";
  std::string dtype = "bf16";
  int warmup = 5;
  int iters = 20;
  int repeats = 5;
  double min_batch_ms = 5;
  std::string splits = "balanced,skewed";
  std::string algos = "grouped,padded,auto";
  int64_t row_elems = 2048;
  bool no_direct = false;
  int timeout_s = 120;
  std::string json;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int64_t parse_bytes(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw InputError("--sizes: '" + s + "' is not a size (examples: 65536, 1M, 256M, 1G)");
  }
  const std::string unit = s.substr(used);
  double scale = 1;
  if (unit == "K" || unit == "KB") scale = 1 << 10;
  else if (unit == "M" || unit == "MB") scale = 1 << 20;
  else if (unit == "G" || unit == "GB") scale = 1 << 30;
  else if (!unit.empty()) throw InputError("--sizes: unknown unit in '" + s + "' (K, M, G)");
  if (v <= 0) throw InputError("--sizes: '" + s + "' must be positive");
  return static_cast<int64_t>(v * scale);
}

GroupKind parse_group(const std::string& name) {
  for (GroupKind k : all_group_kinds())
    if (to_string(k) == name) return k;
  std::string names;
  for (GroupKind k : all_group_kinds()) names += (names.empty() ? "" : ", ") + to_string(k);
  throw InputError("--group '" + name + "': expected one of " + names);
}

int run_collectives(const CollectivesArgs& a, const std::vector<std::string>& argv) {
  // Every flag is checked here, before any rank starts.
  const Backend backend = parse_backend(a.backend);
  if (a.ranks < 1) throw InputError("--gpus/--ranks must be >= 1");
  const ParallelConfig parallel = a.parallel.config(a.ranks);
  const GroupKind group = parse_group(a.group);
  CollectiveBenchOptions o;
  o.ops = split_list(a.ops);
  const auto known = all_collective_ops();
  for (const auto& op : o.ops)
    if (std::find(known.begin(), known.end(), op) == known.end())
      throw InputError("--ops: unknown collective '" + op + "'");
  for (const auto& s : split_list(a.sizes)) o.sizes.push_back(parse_bytes(s));
  o.dtype = parse_dtype(a.dtype);
  if (a.warmup < 0 || a.iters < 1 || a.repeats < 1 || a.min_batch_ms < 0)
    throw InputError("--iters and --repeats must be >= 1, --warmup and --min-batch-ms >= 0");
  o.repeats = a.repeats;
  o.min_batch_ms = a.min_batch_ms;
  o.warmup = a.warmup;
  o.iters = a.iters;
  o.splits = split_list(a.splits);
  for (const auto& s : o.splits)
    if (s != "balanced" && s != "skewed" && s != "zero")
      throw InputError("--splits: unknown split '" + s + "' (balanced, skewed, zero)");
  for (const auto& s : split_list(a.algos)) {
    try {
      o.algos.push_back(parse_var_algo(s));
    } catch (const std::invalid_argument& e) {
      throw InputError(std::string("--algo: ") + e.what());
    }
  }
  if (o.ops.empty() || o.sizes.empty() || o.splits.empty() || o.algos.empty())
    throw InputError("--ops, --sizes, --splits and --algo need at least one value each");
  if (a.row_elems < 1) throw InputError("--row-elems must be >= 1");
  o.row_elems = a.row_elems;
  o.direct = !a.no_direct;

  // On disk from here on, a row added as each finishes: a failure or a signal keeps the rows done.
  nlohmann::json header = run_record("collectives", argv, "");
  header["backend"] = to_string(backend);
  header["ranks"] = a.ranks;
  header["parallel"] = parallel.to_json();
  header["group"] = a.group;
  header["iters"] = o.iters;
  header["warmup"] = o.warmup;
  header["repeats"] = o.repeats;
  header["min_batch_ms"] = o.min_batch_ms;
  header["rows"] = nlohmann::json::array();
  RecordFile record(a.json, header);
  std::vector<CollectiveRow> rows;
  std::string device;
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    CollectiveBenchOptions options = o;
    if (ctx.rank() == 0) {
      device = device_name(ctx.device());
      record.update([&](nlohmann::json& r) { r["device"] = device; });
      options.on_row = [&](const CollectiveRow& row) {
        record.update([&](nlohmann::json& r) { r["rows"].push_back(to_json(row)); });
      };
    }
    std::shared_ptr<Communicator> sub;
    Communicator* comm = &ctx.world();
    if (group != GroupKind::World) {
      sub = ctx.split(to_string(group), group_partition(parallel, group));
      comm = sub.get();
    }
    auto result = run_collective_bench(ctx, *comm, options);
    if (ctx.rank() == 0) rows = std::move(result);
  }, std::chrono::seconds(a.timeout_s));
  if (rows.empty()) return 0;  // not rank 0 of an mpirun launch

  std::cout << "# layoutbench collectives: backend " << to_string(backend) << ", " << a.ranks << " ranks, group "
            << a.group << ", " << device << "\n"
            << "# time: median of " << o.repeats << " batches of the slowest rank's mean time per call (a batch: >= "
            << o.iters << " calls and >= " << o.min_batch_ms << " ms); nccl time: the same NCCL call made directly, "
            << "batches alternating with ours; ratio: busbw / nccl busbw\n"
            << format_collective_rows(rows);
  int64_t wrong = 0;
  for (const auto& r : rows) wrong += r.wrong;
  std::cout << "# wrong elements in total: " << wrong << "\n";
  record.update([&](nlohmann::json& r) { r["wrong_total"] = wrong; });
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return wrong == 0 ? 0 : 1;
}

}  // namespace

std::function<int()> add_collectives_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<CollectivesArgs>();
  a->backend = to_string(default_backend());
  CLI::App* sub = app.add_subcommand(
      "collectives", "Benchmark every collective of the Communicator over sizes (nccl-tests columns), check every "
                     "row's result, and time the same NCCL call made directly");
  sub->add_option("--backend", a->backend, "cpu (CPU ranks, threads) or nccl (GPUs); default: nccl in CUDA builds");
  sub->add_option("--gpus,--ranks", a->ranks, "Number of ranks (GPUs with nccl; under mpirun, the process count)")
      ->required()
      ->check(positive_integer());
  add_parallel_flags(*sub, a->parallel);
  sub->add_option("--group", a->group, "Run in this group of the parallel config (world, attn_tp, attn_cp, attn_dp, "
                                       "moe_tp, moe_ep, moe_dp, moe_cp, dense_tp); all groups run at once");
  sub->add_option("--ops", a->ops, "Comma-separated collectives");
  sub->add_option("--sizes", a->sizes, "Comma-separated sizes in bytes, with K/M/G suffixes");
  sub->add_option("--dtype", a->dtype, "bf16, f16 or f32");
  sub->add_option("--warmup", a->warmup, "Untimed iterations per row")->check(non_negative_integer());
  sub->add_option("--iters", a->iters, "Minimum calls per timed batch")->check(positive_integer());
  sub->add_option("--min-batch-ms", a->min_batch_ms, "Minimum length of a timed batch (more calls for small sizes)")
      ->check(finite_at_least(0));
  sub->add_option("--repeats", a->repeats, "Timed batches per row (the row reports the median)")
      ->check(positive_integer());
  sub->add_option("--splits", a->splits,
                  "Row splits for all_gatherv, reduce_scatterv and all_to_allv: balanced, skewed (rank r gets r+1 "
                  "parts), zero (rank 0 gets none)");
  sub->add_option("--algo", a->algos, "Algorithms for the uneven ops: grouped, padded, auto (measured pick)");
  sub->add_option("--row-elems", a->row_elems, "Elements per row for the row-based ops (a hidden state)")
      ->check(positive_integer());
  sub->add_flag("--no-direct", a->no_direct, "Skip the direct NCCL timing");
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--json", a->json, "Write the rows and the run's command, commit and device to this JSON file")
      ->check(output_file());
  return [a, argv] { return run_collectives(*a, argv); };
}

}  // namespace lb
