#include "harness/runtime/communicator.h"

#include "harness/runtime/fault_injection.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace lb {

nlohmann::json summarize_collectives(const std::vector<CollectiveRecord>& records) {
  nlohmann::json out = nlohmann::json::object();
  for (const CollectiveRecord& r : records) {
    nlohmann::json& e = out[r.op + "@" + r.group];
    if (e.is_null()) e = {{"calls", 0}, {"bytes", int64_t{0}}, {"ms", 0.0}};
    e["calls"] = e["calls"].get<int>() + 1;
    e["bytes"] = e["bytes"].get<int64_t>() + r.bytes;
    e["ms"] = e["ms"].get<double>() + r.ms;
  }
  return out;
}

VarAlgo parse_var_algo(const std::string& name) {
  if (name == "auto") return VarAlgo::Auto;
  if (name == "grouped") return VarAlgo::Grouped;
  if (name == "padded") return VarAlgo::Padded;
  throw std::invalid_argument("unknown algorithm '" + name + "' (expected auto, grouped or padded)");
}

std::string to_string(VarAlgo algo) {
  switch (algo) {
    case VarAlgo::Auto: return "auto";
    case VarAlgo::Grouped: return "grouped";
    case VarAlgo::Padded: return "padded";
  }
  return "?";
}

int64_t tensor_bytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

Communicator::Communicator(std::string name, int rank, int size) : name_(std::move(name)), rank_(rank), size_(size) {
  if (size < 1 || rank < 0 || rank >= size)
    throw std::invalid_argument("communicator " + name_ + ": rank " + std::to_string(rank) + " of " +
                                std::to_string(size));
}

template <typename F>
void Communicator::recorded(const std::string& op, int64_t bytes, F&& body) {
  maybe_inject_fault(op);
  if (!timing_) {
    if (spans_) open_spans_.push_back(span(body));
    else body();
    records_.push_back({op, name_, bytes, 0.0});
    return;
  }
  // Every member enters together, so the time is the collective's own and not the wait for a
  // member still computing (a layout's ranks reach a collective at different times).
  synchronize();
  if (size_ > 1) do_barrier();  // ends with this rank's device idle (do_barrier's contract)
  const auto start = std::chrono::steady_clock::now();
  const double on_device = device_ms(body);
  const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  records_.push_back({op, name_, bytes, on_device >= 0 ? on_device : wall});
}

std::function<double()> Communicator::span(const std::function<void()>& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return [ms] { return ms; };
}

double Communicator::take_span_ms() {
  double total = 0;
  for (const auto& read : open_spans_) total += read();
  open_spans_.clear();
  return total;
}

void Communicator::check_tensor(const char* op, const torch::Tensor& t) const {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(op) + " on group " + name_ + ": " + what);
  };
  if (!t.defined()) fail("undefined tensor");
  if (!t.is_contiguous()) fail("tensor is not contiguous");
  const auto dt = t.scalar_type();
  if (dt != torch::kFloat32 && dt != torch::kBFloat16 && dt != torch::kFloat16)
    fail(std::string("unsupported dtype ") + c10::toString(dt) + " (f32, bf16, f16 only)");
  if (t.dim() < 1) fail("tensor needs at least one dimension (rows)");
}

void Communicator::check_rows(const char* op, const std::vector<int64_t>& rows) const {
  if (static_cast<int>(rows.size()) != size_)
    throw std::invalid_argument(std::string(op) + " on group " + name_ + ": " + std::to_string(rows.size()) +
                                " row counts for " + std::to_string(size_) + " ranks");
  for (int64_t r : rows)
    if (r < 0) throw std::invalid_argument(std::string(op) + " on group " + name_ + ": negative row count");
}

namespace {
std::vector<int64_t> with_rows(const torch::Tensor& t, int64_t rows) {
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = rows;
  return shape;
}
int64_t sum_of(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }
}  // namespace

void Communicator::all_reduce(torch::Tensor& t) {
  check_tensor("all_reduce", t);
  recorded("all_reduce", tensor_bytes(t), [&] { do_all_reduce(t); });
}

torch::Tensor Communicator::all_gather(const torch::Tensor& in) {
  check_tensor("all_gather", in);
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) * size_), in.options());
  recorded("all_gather", tensor_bytes(in), [&] { do_all_gather(in, out); });
  return out;
}

torch::Tensor Communicator::reduce_scatter(const torch::Tensor& in) {
  check_tensor("reduce_scatter", in);
  if (in.size(0) % size_ != 0)
    throw std::invalid_argument("reduce_scatter on group " + name_ + ": " + std::to_string(in.size(0)) +
                                " rows do not split evenly over " + std::to_string(size_) + " ranks");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) / size_), in.options());
  recorded("reduce_scatter", tensor_bytes(in), [&] { do_reduce_scatter(in, out); });
  return out;
}

torch::Tensor Communicator::all_gatherv(const torch::Tensor& in, const std::vector<int64_t>& rows) {
  check_tensor("all_gatherv", in);
  check_rows("all_gatherv", rows);
  if (rows[rank_] != in.size(0))
    throw std::invalid_argument("all_gatherv on group " + name_ + ": rank " + std::to_string(rank_) + " has " +
                                std::to_string(in.size(0)) + " rows but rows[" + std::to_string(rank_) +
                                "] = " + std::to_string(rows[rank_]));
  torch::Tensor out = torch::empty(with_rows(in, sum_of(rows)), in.options());
  VarAlgo algo = var_algo_ == VarAlgo::Auto ? pick_var_algo("all_gatherv", in, rows) : var_algo_;
  recorded("all_gatherv/" + to_string(algo), tensor_bytes(in), [&] { run_var("all_gatherv", algo, in, out, rows); });
  return out;
}

torch::Tensor Communicator::reduce_scatterv(const torch::Tensor& in, const std::vector<int64_t>& rows) {
  check_tensor("reduce_scatterv", in);
  check_rows("reduce_scatterv", rows);
  if (sum_of(rows) != in.size(0))
    throw std::invalid_argument("reduce_scatterv on group " + name_ + ": row counts sum to " +
                                std::to_string(sum_of(rows)) + " but the input has " + std::to_string(in.size(0)) +
                                " rows");
  torch::Tensor out = torch::empty(with_rows(in, rows[rank_]), in.options());
  VarAlgo algo = var_algo_ == VarAlgo::Auto ? pick_var_algo("reduce_scatterv", in, rows) : var_algo_;
  recorded("reduce_scatterv/" + to_string(algo), tensor_bytes(in),
           [&] { run_var("reduce_scatterv", algo, in, out, rows); });
  return out;
}

torch::Tensor Communicator::all_to_allv(const torch::Tensor& in, const std::vector<int64_t>& send_rows,
                                        const std::vector<int64_t>& recv_rows) {
  check_tensor("all_to_allv", in);
  check_rows("all_to_allv", send_rows);
  check_rows("all_to_allv", recv_rows);
  if (sum_of(send_rows) != in.size(0))
    throw std::invalid_argument("all_to_allv on group " + name_ + ": send counts sum to " +
                                std::to_string(sum_of(send_rows)) + " but the input has " +
                                std::to_string(in.size(0)) + " rows");
  torch::Tensor out = torch::empty(with_rows(in, sum_of(recv_rows)), in.options());
  recorded("all_to_allv", tensor_bytes(in), [&] { do_all_to_allv(in, out, send_rows, recv_rows); });
  return out;
}

void Communicator::broadcast(torch::Tensor& t, int root) {
  check_tensor("broadcast", t);
  if (root < 0 || root >= size_)
    throw std::invalid_argument("broadcast on group " + name_ + ": root " + std::to_string(root) + " out of range");
  recorded("broadcast", tensor_bytes(t), [&] { do_broadcast(t, root); });
}

void Communicator::barrier() {
  recorded("barrier", 0, [&] { do_barrier(); });
}

void Communicator::run_var(const std::string& op, VarAlgo algo, const torch::Tensor& in, torch::Tensor& out,
                           const std::vector<int64_t>& rows) {
  const bool gather = op == "all_gatherv";
  if (algo == VarAlgo::Grouped) {
    if (gather) do_all_gatherv_grouped(in, out, rows);
    else do_reduce_scatterv_grouped(in, out, rows);
  } else {
    if (gather) all_gatherv_padded(in, out, rows);
    else reduce_scatterv_padded(in, out, rows);
  }
}

void Communicator::all_gatherv_padded(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
  if (max_rows == 0) return;
  torch::Tensor padded = torch::zeros(with_rows(in, max_rows), in.options());
  padded.narrow(0, 0, in.size(0)).copy_(in);
  torch::Tensor gathered = torch::empty(with_rows(in, max_rows * size_), in.options());
  do_all_gather(padded, gathered);
  int64_t offset = 0;
  for (int r = 0; r < size_; ++r) {
    out.narrow(0, offset, rows[r]).copy_(gathered.narrow(0, r * max_rows, rows[r]));
    offset += rows[r];
  }
}

void Communicator::reduce_scatterv_padded(const torch::Tensor& in, torch::Tensor& out,
                                          const std::vector<int64_t>& rows) {
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
  if (max_rows == 0) return;
  torch::Tensor padded = torch::zeros(with_rows(in, max_rows * size_), in.options());
  int64_t offset = 0;
  for (int r = 0; r < size_; ++r) {
    padded.narrow(0, r * max_rows, rows[r]).copy_(in.narrow(0, offset, rows[r]));
    offset += rows[r];
  }
  torch::Tensor mine = torch::empty(with_rows(in, max_rows), in.options());
  do_reduce_scatter(padded, mine);
  out.copy_(mine.narrow(0, 0, rows[rank_]));
}

VarAlgo Communicator::pick_var_algo(const std::string& op, const torch::Tensor& like,
                                    const std::vector<int64_t>& rows) {
  if (size_ == 1) return VarAlgo::Grouped;
  const int64_t total = sum_of(rows);
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
  // Bytes per row from the trailing shape, not from `like`'s rows: a rank holding no rows must land
  // in the same class as its peers, or it skips a measurement they run.
  int64_t row_bytes = like.element_size();
  for (int64_t d = 1; d < like.dim(); ++d) row_bytes *= like.size(d);
  // Size class: log2 of the bytes the op moves; imbalance class: how much padding costs, in tenths.
  const int size_class = static_cast<int>(std::log2(std::max<double>(1.0, double(total) * row_bytes)));
  const int imbalance_class =
      total > 0 ? static_cast<int>(std::lround(10.0 * double(max_rows * size_) / double(total))) : 0;
  const auto key = std::make_tuple(op, size_class, imbalance_class);
  if (auto it = picks_.find(key); it != picks_.end()) return it->second;

  // Time both algorithms on scratch data of the real shape; every rank measures, the sums decide,
  // so every rank picks the same algorithm.
  const bool gather = op == "all_gatherv";
  torch::Tensor in = gather ? torch::ones(with_rows(like, rows[rank_]), like.options())
                            : torch::ones(with_rows(like, total), like.options());
  torch::Tensor out = torch::empty(with_rows(like, gather ? total : rows[rank_]), like.options());
  // Rounds alternate the two algorithms and each keeps its fastest batch: one batch of each, timed
  // once, let host jitter decide small sizes (on 2 H200s at b7dd790 the slower padded algorithm
  // was picked twice at 1-16 MB).
  double seconds[2] = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
  const VarAlgo algos[2] = {VarAlgo::Grouped, VarAlgo::Padded};
  constexpr int kRounds = 5, kRepeats = 3;
  for (int a = 0; a < 2; ++a) run_var(op, algos[a], in, out, rows);  // warm-up
  for (int round = 0; round < kRounds; ++round)
    for (int a = 0; a < 2; ++a) {
      synchronize();
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kRepeats; ++i) run_var(op, algos[a], in, out, rows);
      synchronize();
      seconds[a] = std::min(seconds[a], std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  torch::Tensor votes = torch::tensor({seconds[0], seconds[1]}, torch::kFloat32).to(like.device());
  do_all_reduce(votes);
  votes = votes.to(torch::kCPU);
  const VarAlgo pick = votes[0].item<float>() <= votes[1].item<float>() ? VarAlgo::Grouped : VarAlgo::Padded;
  picks_[key] = pick;
  return pick;
}

}  // namespace lb
