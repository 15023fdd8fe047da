#pragma once
// The NCCL backend of Communicator (CUDA Torch builds only). Communicators are created
// non-blocking: every NCCL call is followed by a bounded wait, and device waits poll the stream,
// so a dead or absent peer ends in a CommError after `timeout` (the communicator is aborted).
#include "harness/runtime/collective_watch.h"
#include "harness/runtime/communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace lb {

// Set by a launcher when any rank of the run failed: waiting ranks stop at once.
struct AbortSignal {
  std::atomic<bool> raised{false};
};

// Throws CommError "<what>: <NCCL message>" unless r is ncclSuccess or ncclInProgress.
void check_nccl(ncclResult_t r, const std::string& what);
void check_cuda(cudaError_t r, const std::string& what);

// Waits until a non-blocking communicator has finished its pending call (init, split, enqueue);
// aborts it and throws CommError after `timeout` or when `abort` is raised.
void wait_comm_ready(ncclComm_t comm, const std::string& what, std::chrono::milliseconds timeout,
                     const AbortSignal* abort);

class NcclCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (already initialized) on CUDA device `device`.
  NcclCommunicator(std::string name, int rank, int size, ncclComm_t comm, int device,
                   std::chrono::milliseconds timeout, std::shared_ptr<AbortSignal> abort);
  ~NcclCommunicator() override;

  ncclComm_t comm() const { return comm_; }
  int device() const { return device_; }
  // Torch's current stream on this device: NCCL runs in order with the surrounding kernels.
  cudaStream_t stream() const;
  std::chrono::milliseconds timeout() const { return timeout_; }
  const std::shared_ptr<AbortSignal>& abort_signal() const { return abort_; }
  // Throws unless ready (see wait_comm_ready); `what` names the call for the message.
  void ready(const std::string& what) const;
  // From now on every launch is reported to `watch` (as world rank `world_rank` in `group`) with
  // an event that tells when the device has finished it.
  void watch_with(std::shared_ptr<CollectiveWatch> watch, WatchedGroup group, int world_rank);

 protected:
  void do_all_reduce(torch::Tensor& t) override;
  void do_all_gather(const torch::Tensor& in, torch::Tensor& out) override;
  void do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out) override;
  void do_all_gatherv_grouped(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& rows) override;
  void do_reduce_scatterv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                  const std::vector<int64_t>& rows) override;
  void do_all_to_allv(const torch::Tensor& in, torch::Tensor& out, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override;
  void do_broadcast(torch::Tensor& t, int root) override;
  void do_barrier() override;
  void synchronize() override;
  // Between two events on the stream around `body`, the first after a device-side alignment.
  double device_ms(const std::function<void()>& body) override;
  std::function<double()> span(const std::function<void()>& body) override;

 private:
  // Reports the launch just enqueued to the watch, if any.
  void watched(const char* op);

  ncclComm_t comm_;
  int device_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<AbortSignal> abort_;
  mutable bool aborted_ = false;
  cudaEvent_t timing_start_ = nullptr, timing_end_ = nullptr;  // created on first timed call
  std::shared_ptr<CollectiveWatch> watch_;
  WatchedGroup watched_group_;
  int world_rank_ = -1;
};

ncclDataType_t nccl_dtype(torch::ScalarType t);

}  // namespace lb
