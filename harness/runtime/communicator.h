#pragma once
// Collectives on LibTorch tensors within one process group, with every call recorded (op, group,
// bytes, time) for the reports. Backends (CPU ranks, NCCL) implement a few primitives; argument
// checks, the padded variants of the uneven ops, and the measured pick between algorithms live
// here once.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace lb {

// A collective could not complete: a peer timed out, failed, or the backend reported an error.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// How reduce_scatterv and all_gatherv move uneven row counts:
//   Grouped: one reduce (or broadcast) per root rank, grouped into one launch (as SGLang);
//   Padded:  pad every rank to the largest count, one equal reduce_scatter (all_gather), unpad;
//   Auto:    time both once per (op, size class, imbalance class), all ranks agree, keep the faster.
enum class VarAlgo { Auto, Grouped, Padded };
VarAlgo parse_var_algo(const std::string& name);  // "auto" | "grouped" | "padded"
std::string to_string(VarAlgo algo);

struct CollectiveRecord {
  std::string op;     // e.g. "all_reduce", "reduce_scatterv/padded"
  std::string group;  // the communicator's name
  int64_t bytes = 0;  // bytes of this rank's input
  double ms = 0;      // with timing on: the call's time on the device (GPU events) or its wall time (CPU ranks)
};

// Calls, bytes and milliseconds summed per "op@group", for reports.
nlohmann::json summarize_collectives(const std::vector<CollectiveRecord>& records);

class Communicator {
 public:
  Communicator(std::string name, int rank, int size);
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Rows are dim 0. Inputs are contiguous f32, bf16 or f16 on this rank's device, with the same
  // dtype and trailing shape on every rank. Reductions are sums. Row vectors (`rows`) are the
  // per-rank counts in rank order and must be identical on every rank.
  void all_reduce(torch::Tensor& t);
  torch::Tensor all_gather(const torch::Tensor& in);  // same rows everywhere -> [size * rows, ...]
  torch::Tensor all_gatherv(const torch::Tensor& in, const std::vector<int64_t>& rows);  // rows[rank] == in rows
  torch::Tensor reduce_scatter(const torch::Tensor& in);  // rows % size == 0 -> this rank's chunk
  torch::Tensor reduce_scatterv(const torch::Tensor& in, const std::vector<int64_t>& rows);  // sum(rows) == in rows
  // Sends send_rows[j] consecutive rows to rank j; receives recv_rows[j] rows from rank j, in rank order.
  torch::Tensor all_to_allv(const torch::Tensor& in, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& recv_rows);
  void broadcast(torch::Tensor& t, int root);
  void barrier();

  void set_var_algo(VarAlgo algo) { var_algo_ = algo; }
  VarAlgo var_algo() const { return var_algo_; }
  // The algorithm Auto settled on for this op and row split (Grouped or Padded), measuring it now
  // if it has not been measured. Collective: every rank must call it with the same arguments.
  VarAlgo pick_var_algo(const std::string& op, const torch::Tensor& like, const std::vector<int64_t>& rows);

  // Off (the default): calls are only counted, so a run's own speed is untouched. On: each call
  // is timed by itself, on the device where there is one, after a barrier of the group, so the
  // time is the collective's and not a wait for a member still computing or for the host's poll.
  void set_timing(bool on) { timing_ = on; }
  bool timing() const { return timing_; }
  // Waits until this rank's queued device work is done.
  void wait_device() { synchronize(); }
  const std::vector<CollectiveRecord>& records() const { return records_; }
  void clear_records() { records_.clear(); }
  // Spans (off by default; for a benchmark's untimed runs, ignored while timing is on): each call's
  // time from its start to its end, waiting for the other members included, kept without waiting
  // for the device; take_span_ms() waits for them, adds them up and forgets them.
  void set_spans(bool on) { spans_ = on; }
  double take_span_ms();

 protected:
  // Backend primitives; arguments are already checked and outputs allocated on the right device.
  virtual void do_all_reduce(torch::Tensor& t) = 0;
  virtual void do_all_gather(const torch::Tensor& in, torch::Tensor& out) = 0;
  virtual void do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out) = 0;
  // out holds sum(rows) rows; rank r's block starts at sum(rows[0..r)).
  virtual void do_all_gatherv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                      const std::vector<int64_t>& rows) = 0;
  virtual void do_reduce_scatterv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                          const std::vector<int64_t>& rows) = 0;
  virtual void do_all_to_allv(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& send_rows,
                              const std::vector<int64_t>& recv_rows) = 0;
  virtual void do_broadcast(torch::Tensor& t, int root) = 0;
  // Returns once every member has arrived, with this rank's queued device work done.
  virtual void do_barrier() = 0;
  // Waits until this rank's queued device work is done (a no-op on CPU).
  virtual void synchronize() = 0;
  // Runs `body`, waits for it, and returns its time on the device in ms; negative where the
  // backend has no device clock (CPU ranks), and the caller keeps the wall time instead.
  virtual double device_ms(const std::function<void()>& body) {
    body();
    synchronize();
    return -1;
  }
  // Runs `body` and returns how to read its span (ms) later: GPU events around it where there is a
  // device; here, CPU ranks, the wall time of the call, which returns once every member is done.
  virtual std::function<double()> span(const std::function<void()>& body);

 private:
  template <typename F>
  void recorded(const std::string& op, int64_t bytes, F&& body);
  void check_tensor(const char* op, const torch::Tensor& t) const;
  void check_rows(const char* op, const std::vector<int64_t>& rows) const;
  void all_gatherv_padded(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& rows);
  void reduce_scatterv_padded(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& rows);
  void run_var(const std::string& op, VarAlgo algo, const torch::Tensor& in, torch::Tensor& out,
               const std::vector<int64_t>& rows);

  std::string name_;
  int rank_;
  int size_;
  VarAlgo var_algo_ = VarAlgo::Auto;
  bool timing_ = false;
  std::vector<CollectiveRecord> records_;
  bool spans_ = false;
  std::vector<std::function<double()>> open_spans_;
  // (op, log2 of bytes, imbalance class) -> the measured pick.
  std::map<std::tuple<std::string, int, int>, VarAlgo> picks_;
};

// Bytes of a tensor's elements.
int64_t tensor_bytes(const torch::Tensor& t);

}  // namespace lb
