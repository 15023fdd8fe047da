#include "harness/bench/collective_bench.h"

#include "harness/runtime/device.h"
#include "harness/runtime/progress.h"
#ifdef LB_HAVE_CUDA
#include "harness/bench/nccl_direct.h"
#endif

#include <algorithm>
#include <cmath>
#include <functional>
#include <chrono>
#include <iomanip>
#include <numeric>
#include <optional>
#include <sstream>

namespace lb {

std::vector<std::string> all_collective_ops() {
  return {"all_reduce", "all_gather", "reduce_scatter", "all_gatherv", "reduce_scatterv", "all_to_allv", "broadcast"};
}

const std::vector<std::string>& uneven_ops() {
  static const std::vector<std::string> ops = {"all_gatherv", "reduce_scatterv"};
  return ops;
}

std::vector<int64_t> split_rows(const std::string& split, int64_t total, int ranks) {
  std::vector<int64_t> weights(ranks, 1);
  if (split == "skewed") std::iota(weights.begin(), weights.end(), 1);
  else if (split == "zero" && ranks > 1) weights[0] = 0;
  else if (split != "balanced" && split != "zero")
    throw std::invalid_argument("unknown split '" + split + "' (balanced, skewed, zero)");
  const int64_t sum = std::accumulate(weights.begin(), weights.end(), int64_t{0});
  std::vector<int64_t> rows(ranks);
  int64_t given = 0;
  for (int r = 0; r < ranks; ++r) given += rows[r] = total * weights[r] / sum;
  // The remainder goes to the ranks that already have rows, so "zero" keeps its empty rank.
  for (int r = ranks - 1; given < total; r = (r + ranks - 1) % ranks)
    if (weights[r] > 0) ++rows[r], ++given;
  return rows;
}

namespace {

// One benchmark case: this rank's input, the row splits, and the exact expected output. Values are
// small integers times (rank + 1), so every sum is exact in bf16 and f16 as well as f32.
struct Case {
  torch::Tensor in;
  torch::Tensor expected;
  std::vector<int64_t> rows, recv_rows;
  int64_t bytes = 0, count = 0;
  double bus_factor = 1;
};

torch::Tensor pattern(int64_t first, int64_t n, double scale, torch::ScalarType dtype, torch::Device device) {
  torch::Tensor e = torch::arange(first, first + n, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return (e.remainder(5) + 1).to(torch::kFloat32).mul(scale).to(dtype);
}

int64_t sum_to(const std::vector<int64_t>& v, int end) {
  return std::accumulate(v.begin(), v.begin() + end, int64_t{0});
}

Case make_case(const std::string& op, const std::string& split, int64_t bytes, const CollectiveBenchOptions& o,
               int n, int me, torch::Device device) {
  const int64_t elem = torch::elementSize(o.dtype);
  const int64_t re = o.row_elems;
  const double S = n * (n + 1) / 2.0;
  auto pat = [&](int64_t first, int64_t count, double scale) { return pattern(first, count, scale, o.dtype, device); };
  Case c;
  if (op == "all_reduce" || op == "broadcast") {
    c.count = std::max<int64_t>(1, bytes / elem);
    c.in = op == "all_reduce" ? pat(0, c.count, me + 1) : (me == 0 ? pat(0, c.count, 1) : pat(0, c.count, 0));
    c.expected = pat(0, c.count, op == "all_reduce" ? S : 1);
    c.bus_factor = op == "all_reduce" ? 2.0 * (n - 1) / n : 1.0;
    c.bytes = c.count * elem;
    return c;
  }
  int64_t R = std::max<int64_t>(n, bytes / (elem * re));
  c.bus_factor = double(n - 1) / n;
  if (op == "all_gather" || op == "reduce_scatter") {
    R -= R % n;
    c.rows.assign(n, R / n);
  } else if (op == "all_gatherv" || op == "reduce_scatterv") {
    c.rows = split_rows(split, R, n);
  }
  if (op == "all_gather" || op == "all_gatherv") {
    c.in = pat(sum_to(c.rows, me) * re, c.rows[me] * re, me + 1).view({c.rows[me], re});
    std::vector<torch::Tensor> parts;
    for (int r = 0; r < n; ++r) parts.push_back(pat(sum_to(c.rows, r) * re, c.rows[r] * re, r + 1));
    c.expected = torch::cat(parts).view({R, re});
  } else if (op == "reduce_scatter" || op == "reduce_scatterv") {
    c.in = pat(0, R * re, me + 1).view({R, re});
    c.expected = pat(sum_to(c.rows, me) * re, c.rows[me] * re, S).view({c.rows[me], re});
  } else if (op == "all_to_allv") {
    // Rank i sends base[(j - i) mod n] rows to rank j: every rank sends R rows in all.
    const std::vector<int64_t> base = split_rows(split, R, n);
    auto sent = [&](int from, int to) { return base[((to - from) % n + n) % n]; };
    for (int j = 0; j < n; ++j) c.rows.push_back(sent(me, j)), c.recv_rows.push_back(sent(j, me));
    c.in = pat(0, R * re, me + 1).view({R, re});
    std::vector<torch::Tensor> parts;
    for (int j = 0; j < n; ++j) {
      int64_t offset = 0;
      for (int k = 0; k < me; ++k) offset += sent(j, k);
      parts.push_back(pat(offset * re, sent(j, me) * re, j + 1));
    }
    c.expected = torch::cat(parts).view({-1, re});
  } else {
    throw std::invalid_argument("unknown collective '" + op + "'");
  }
  c.bytes = R * re * elem;
  c.count = R * re;
  return c;
}

torch::Tensor run_op(Communicator& comm, const std::string& op, const Case& c, torch::Tensor& scratch) {
  if (op == "all_reduce" || op == "broadcast") {
    if (op == "all_reduce") comm.all_reduce(scratch);
    else comm.broadcast(scratch, 0);
    return scratch;
  }
  if (op == "all_gather") return comm.all_gather(c.in);
  if (op == "reduce_scatter") return comm.reduce_scatter(c.in);
  if (op == "all_gatherv") return comm.all_gatherv(c.in, c.rows);
  if (op == "reduce_scatterv") return comm.reduce_scatterv(c.in, c.rows);
  return comm.all_to_allv(c.in, c.rows, c.recv_rows);
}

// The slowest rank's value: each rank fills its slot, the world sums.
double max_over_world(RankContext& ctx, double value) {
  torch::Tensor slots = torch::zeros({ctx.world_size()}, torch::TensorOptions().dtype(torch::kFloat32));
  slots[ctx.rank()] = value;
  slots = slots.to(ctx.device());
  ctx.world().all_reduce(slots);
  return slots.max().item<double>();
}

double sum_over_world(RankContext& ctx, double value) {
  torch::Tensor t = torch::full({1}, value, torch::TensorOptions().dtype(torch::kFloat32)).to(ctx.device());
  ctx.world().all_reduce(t);
  return t.item<double>();
}

// Mean time of one launch over a batch, on the slowest rank.
template <typename F>
double batch_us(RankContext& ctx, Communicator& comm, int iters, F&& launch) {
  comm.wait_device();
  ctx.world().barrier();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) launch();
  comm.wait_device();
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  return max_over_world(ctx, us / iters);
}

// Launches per timed batch: at least o.iters, and enough for a batch to last o.min_batch_ms so
// that launch latency and timer noise stay small next to it. Every rank must launch the same count,
// so the estimate is the slowest rank's.
template <typename F>
int batch_iters(RankContext& ctx, Communicator& comm, const CollectiveBenchOptions& o, F&& launch) {
  launch();  // the first call of a size pays for setup; it stays out of the estimate
  const double slowest = batch_us(ctx, comm, std::max(o.warmup, 1), launch);
  return std::max(o.iters, int(std::ceil(o.min_batch_ms * 1e3 / std::max(slowest, 1.0))));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#ifdef LB_HAVE_CUDA
// The same NCCL call as the communicator's, made straight on its NCCL communicator with buffers
// allocated once: the yardstick for the communicator's overhead.
struct DirectCall {
  std::string name;
  torch::Tensor in, out;
};

DirectCall direct_call(NcclCommunicator& nc, const std::string& op, const std::string& algo, const Case& c) {
  const int n = nc.size();
  DirectCall d{op, c.in.clone(), {}};
  auto shaped = [&](int64_t rows) {
    std::vector<int64_t> s = c.in.sizes().vec();
    s[0] = rows;
    return torch::empty(s, c.in.options());
  };
  if (op == "all_gather") d.out = shaped(c.in.size(0) * n);
  else if (op == "reduce_scatter") d.out = shaped(c.in.size(0) / n);
  else if (op == "all_to_allv") d.out = shaped(std::accumulate(c.recv_rows.begin(), c.recv_rows.end(), int64_t{0}));
  else if (op == "all_gatherv" || op == "reduce_scatterv") {
    d.name = op + "/" + algo;
    const int64_t total = std::accumulate(c.rows.begin(), c.rows.end(), int64_t{0});
    const int64_t max_rows = *std::max_element(c.rows.begin(), c.rows.end());
    // Padded: the bare ncclAllGather / ncclReduceScatter on buffers padded beforehand (the
    // communicator's padded path also copies into and out of them).
    if (algo == "padded" && op == "all_gatherv") d.in = shaped(max_rows), d.out = shaped(max_rows * n);
    else if (algo == "padded") d.in = shaped(max_rows * n), d.out = shaped(max_rows);
    else d.out = shaped(op == "all_gatherv" ? total : c.rows[nc.rank()]);
  }
  return d;
}
#endif

}  // namespace

std::vector<CollectiveRow> run_collective_bench(RankContext& ctx, Communicator& comm,
                                                const CollectiveBenchOptions& o) {
  std::vector<CollectiveRow> rows;
  const int n = comm.size(), me = comm.rank();
  const bool was_timing = comm.timing();
  comm.set_timing(false);
  std::optional<Progress> progress;
  if (ctx.rank() == 0) {
    int64_t total = 0;
    for (const std::string& op : o.ops) {
      const bool uneven = std::find(uneven_ops().begin(), uneven_ops().end(), op) != uneven_ops().end();
      total += int64_t(o.sizes.size()) * (uneven || op == "all_to_allv" ? o.splits.size() : 1) *
               (uneven ? o.algos.size() : 1);
    }
    progress.emplace("collectives: rows", total);
  }
  for (const std::string& op : o.ops) {
    const bool uneven = std::find(uneven_ops().begin(), uneven_ops().end(), op) != uneven_ops().end();
    const std::vector<std::string> splits =
        uneven || op == "all_to_allv" ? o.splits : std::vector<std::string>{"balanced"};
    const std::vector<VarAlgo> algos = uneven ? o.algos : std::vector<VarAlgo>{VarAlgo::Grouped};
    for (const std::string& split : splits)
      for (VarAlgo algo : algos)
        for (int64_t size : o.sizes) {
          Case c = make_case(op, split, size, o, n, me, ctx.device());
          CollectiveRow row;
          row.op = op;
          row.split = split;
          row.type = dtype_name(o.dtype);
          row.group = comm.name();
          row.group_size = n;
          row.bytes = c.bytes;
          row.count = c.count;
          VarAlgo used = algo;
          if (uneven) {
            comm.set_var_algo(algo);
            if (algo == VarAlgo::Auto) used = comm.pick_var_algo(op, c.in, c.rows);
            row.algo = algo == VarAlgo::Auto ? "auto:" + to_string(used) : to_string(algo);
          }
          // Correctness on fresh inputs, then timing (in-place ops keep reducing their buffer,
          // which changes values but not speed).
          torch::Tensor scratch = c.in.clone();
          torch::Tensor out = run_op(comm, op, c, scratch);
          const int64_t wrong = out.ne(c.expected).sum().item<int64_t>();
          row.wrong = int64_t(sum_over_world(ctx, double(wrong)));
          auto ours = [&] { run_op(comm, op, c, scratch); };
          const int iters = batch_iters(ctx, comm, o, ours);
          std::function<void()> direct;
#ifdef LB_HAVE_CUDA
          DirectCall call;
          if (auto* nc = dynamic_cast<NcclCommunicator*>(&comm); nc && o.direct) {
            call = direct_call(*nc, op, to_string(used), c);
            direct = [nc, &call, &c] { nccl_direct(*nc, call.name, call.in, call.out, c.rows, c.recv_rows); };
            for (int i = 0; i < o.warmup; ++i) direct();
          }
#endif
          // Ours and the direct call alternate, so that drift on the machine hits both alike.
          std::vector<double> ours_us, direct_us;
          for (int rep = 0; rep < o.repeats; ++rep) {
            ours_us.push_back(batch_us(ctx, comm, iters, ours));
            if (direct) direct_us.push_back(batch_us(ctx, comm, iters, direct));
          }
          comm.clear_records();
          row.iters = iters;
          row.time_us = median(ours_us);
          row.algbw = row.bytes / (row.time_us * 1e3);
          row.busbw = row.algbw * c.bus_factor;
          if (!direct_us.empty()) {
            row.direct_time_us = median(direct_us);
            row.direct_busbw = row.bytes / (row.direct_time_us * 1e3) * c.bus_factor;
          }
          rows.push_back(row);
          if (o.on_row) o.on_row(row);
          if (progress) progress->step(op);
        }
  }
  comm.set_timing(was_timing);
  return rows;
}

std::string format_collective_rows(const std::vector<CollectiveRow>& rows) {
  std::ostringstream out;
  out << std::left << std::setw(16) << "# op" << std::setw(15) << "algo" << std::setw(9) << "split" << std::right
      << std::setw(12) << "size" << std::setw(12) << "count" << std::setw(6) << "type" << std::setw(10) << "time"
      << std::setw(8) << "algbw" << std::setw(8) << "busbw" << std::setw(8) << "#wrong" << std::setw(11)
      << "nccl time" << std::setw(8) << "busbw" << std::setw(7) << "ratio" << "\n";
  out << std::left << std::setw(16) << "#" << std::setw(15) << "" << std::setw(9) << "" << std::right << std::setw(12)
      << "(B)" << std::setw(12) << "(elements)" << std::setw(6) << "" << std::setw(10) << "(us)" << std::setw(8)
      << "(GB/s)" << std::setw(8) << "(GB/s)" << std::setw(8) << "" << std::setw(11) << "(us)" << std::setw(8)
      << "(GB/s)" << std::setw(7) << "" << "\n";
  for (const CollectiveRow& r : rows) {
    out << std::left << std::setw(16) << r.op << std::setw(15) << (r.algo.empty() ? "-" : r.algo) << std::setw(9)
        << r.split << std::right << std::setw(12) << r.bytes << std::setw(12) << r.count << std::setw(6) << r.type
        << std::fixed << std::setprecision(1) << std::setw(10) << r.time_us << std::setprecision(2) << std::setw(8)
        << r.algbw << std::setw(8) << r.busbw << std::setw(8) << r.wrong;
    if (r.direct_time_us > 0)
      out << std::setprecision(1) << std::setw(11) << r.direct_time_us << std::setprecision(2) << std::setw(8)
          << r.direct_busbw << std::setprecision(3) << std::setw(7) << r.busbw / r.direct_busbw;
    out << "\n";
  }
  return out.str();
}

nlohmann::json to_json(const CollectiveRow& r) {
  nlohmann::json j = {{"op", r.op},           {"algo", r.algo},       {"split", r.split},  {"type", r.type},
                      {"group", r.group},     {"group_size", r.group_size}, {"bytes", r.bytes}, {"count", r.count},
                      {"iters", r.iters}, {"time_us", r.time_us}, {"algbw_GBps", r.algbw}, {"busbw_GBps", r.busbw}, {"wrong", r.wrong}};
  if (r.direct_time_us > 0) {
    j["nccl_direct_time_us"] = r.direct_time_us;
    j["nccl_direct_busbw_GBps"] = r.direct_busbw;
    j["busbw_ratio_to_direct"] = r.busbw / r.direct_busbw;
  }
  return j;
}

}  // namespace lb
