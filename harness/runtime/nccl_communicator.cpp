#include "harness/runtime/nccl_communicator.h"

#include <ATen/cuda/Sleep.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <iostream>
#include <c10/cuda/CUDAStream.h>

#include <thread>

namespace lb {

void check_nccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw CommError(what + ": NCCL error " + std::to_string(int(r)) + " (" + ncclGetErrorString(r) + ")");
}

void check_cuda(cudaError_t r, const std::string& what) {
  if (r != cudaSuccess) throw CommError(what + ": CUDA error " + cudaGetErrorName(r) + " (" + cudaGetErrorString(r) + ")");
}

// Pause between polls: yields for about the first millisecond, then sleeps. A sleeping backoff
// that started after 32 polls doubled the per-call time of threaded small collectives (one thread
// per GPU: 28 us per 1 MB all_reduce under mpirun, 102 us threaded, commit dcd3821), since each
// call waits for its nonblocking communicator; the sleep only serves waits that are already long.
static void pause_before_poll(int& polls) {
  if (++polls < 20000) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(50));
}

void wait_comm_ready(ncclComm_t comm, const std::string& what, std::chrono::milliseconds timeout,
                     const AbortSignal* abort) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int polls = 0;;) {
    ncclResult_t state = ncclInProgress;
    check_nccl(ncclCommGetAsyncError(comm, &state), what);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      ncclCommAbort(comm);
      check_nccl(state, what);
    }
    if (abort && abort->raised.load()) {
      ncclCommAbort(comm);
      throw CommError(what + ": aborted because another rank failed");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm);
      throw CommError(what + ": not done within " + std::to_string(timeout.count()) +
                      " ms (a peer died, never joined, or is stuck)");
    }
    pause_before_poll(polls);
  }
}

ncclDataType_t nccl_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kFloat16: return ncclFloat16;
    default: throw std::invalid_argument(std::string("NCCL: unsupported dtype ") + c10::toString(t));
  }
}

NcclCommunicator::NcclCommunicator(std::string name, int rank, int size, ncclComm_t comm, int device,
                                   std::chrono::milliseconds timeout, std::shared_ptr<AbortSignal> abort)
    : Communicator(std::move(name), rank, size), comm_(comm), device_(device), timeout_(timeout),
      abort_(std::move(abort)) {}

NcclCommunicator::~NcclCommunicator() {
  if (timing_start_) {  // a destructor cannot throw: a failure to destroy an event is left unreported
    c10::cuda::CUDAGuard guard(device_);
    cudaEventDestroy(timing_start_);
    cudaEventDestroy(timing_end_);
  }
  if (!comm_) return;
  // A communicator that saw an error or timeout was aborted already (wait_comm_ready).
  if (aborted_) return;
  // A nonblocking communicator is finalized (flushing its work, polled to completion) before it is
  // destroyed, as NCCL asks; a destructor cannot throw, so a failure here aborts it instead.
  c10::cuda::CUDAGuard guard(device_);
  try {
    check_nccl(ncclCommFinalize(comm_), name() + " finalize");
    wait_comm_ready(comm_, name() + " finalize", timeout_, abort_.get());
  } catch (const std::exception& e) {
    std::cerr << "warning: " << e.what() << "\n";
    return;  // wait_comm_ready aborted it
  }
  ncclCommDestroy(comm_);
}

cudaStream_t NcclCommunicator::stream() const { return c10::cuda::getCurrentCUDAStream(device_).stream(); }

void NcclCommunicator::ready(const std::string& what) const {
  try {
    wait_comm_ready(comm_, name() + " " + what, timeout_, abort_.get());
  } catch (...) {
    aborted_ = true;
    throw;
  }
}

void NcclCommunicator::watch_with(std::shared_ptr<CollectiveWatch> watch, WatchedGroup group, int world_rank) {
  watch_ = std::move(watch);
  watched_group_ = std::move(group);
  world_rank_ = world_rank;
}

void NcclCommunicator::watched(const char* op) {
  if (!watch_) return;
  // A call being captured into a CUDA graph has not launched: its event is a node of the graph, and
  // querying it from the watch thread would invalidate the capture. Replays are not watched.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream(), &capturing), name() + " watch");
  if (capturing != cudaStreamCaptureStatusNone) return;
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), name() + " watch event");
  // Owned by the watch from here: destroyed when the watch forgets the finished call.
  std::shared_ptr<CUevent_st> owned(event, [](cudaEvent_t e) { cudaEventDestroy(e); });
  check_cuda(cudaEventRecord(event, stream()), name() + " watch event");
  watch_->launched(world_rank_, watched_group_, op, [owned] {
    const cudaError_t state = cudaEventQuery(owned.get());
    if (state == cudaErrorNotReady) (void)cudaGetLastError();  // not an error: clear it for this thread
    return state != cudaErrorNotReady;
  });
}

namespace {
char* bytes_of(const torch::Tensor& t) { return static_cast<char*>(t.data_ptr()); }
int64_t row_bytes(const torch::Tensor& t) { return t.size(0) ? tensor_bytes(t) / t.size(0) : 0; }
int64_t row_elems(const torch::Tensor& t) {
  int64_t n = 1;
  for (int64_t i = 1; i < t.dim(); ++i) n *= t.size(i);
  return n;
}
}  // namespace

void NcclCommunicator::do_all_reduce(torch::Tensor& t) {
  c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_dtype(t.scalar_type()), ncclSum, comm_,
                           stream()),
             name() + " all_reduce");
  ready("all_reduce");
  watched("all_reduce");
}

void NcclCommunicator::do_all_gather(const torch::Tensor& in, torch::Tensor& out) {
  c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), nccl_dtype(in.scalar_type()), comm_, stream()),
             name() + " all_gather");
  ready("all_gather");
  watched("all_gather");
}

void NcclCommunicator::do_reduce_scatter(const torch::Tensor& in, torch::Tensor& out) {
  c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_dtype(in.scalar_type()), ncclSum,
                               comm_, stream()),
             name() + " reduce_scatter");
  ready("reduce_scatter");
  watched("reduce_scatter");
}

void NcclCommunicator::do_all_gatherv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                              const std::vector<int64_t>& rows) {
  c10::cuda::CUDAGuard guard(device_);
  const int64_t rb = row_bytes(out), re = row_elems(out);
  const ncclDataType_t dt = nccl_dtype(in.scalar_type());
  check_nccl(ncclGroupStart(), name() + " all_gatherv");
  int64_t offset = 0;
  for (int r = 0; r < size(); ++r) {
    if (rows[r] > 0) {
      char* dst = bytes_of(out) + offset * rb;
      const void* src = r == rank() ? in.data_ptr() : dst;
      check_nccl(ncclBroadcast(src, dst, rows[r] * re, dt, r, comm_, stream()), name() + " all_gatherv");
    }
    offset += rows[r];
  }
  check_nccl(ncclGroupEnd(), name() + " all_gatherv");
  ready("all_gatherv");
  watched("all_gatherv");
}

void NcclCommunicator::do_reduce_scatterv_grouped(const torch::Tensor& in, torch::Tensor& out,
                                                  const std::vector<int64_t>& rows) {
  c10::cuda::CUDAGuard guard(device_);
  const int64_t rb = row_bytes(in), re = row_elems(in);
  const ncclDataType_t dt = nccl_dtype(in.scalar_type());
  check_nccl(ncclGroupStart(), name() + " reduce_scatterv");
  int64_t offset = 0;
  for (int r = 0; r < size(); ++r) {
    if (rows[r] > 0) {
      char* src = bytes_of(in) + offset * rb;
      // The receive buffer matters on the root only.
      void* dst = r == rank() ? out.data_ptr() : static_cast<void*>(src);
      check_nccl(ncclReduce(src, dst, rows[r] * re, dt, ncclSum, r, comm_, stream()), name() + " reduce_scatterv");
    }
    offset += rows[r];
  }
  check_nccl(ncclGroupEnd(), name() + " reduce_scatterv");
  ready("reduce_scatterv");
  watched("reduce_scatterv");
}

void NcclCommunicator::do_all_to_allv(const torch::Tensor& in, torch::Tensor& out,
                                      const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows) {
  c10::cuda::CUDAGuard guard(device_);
  const int64_t rb = row_bytes(out.size(0) ? out : in), re = row_elems(in);
  const ncclDataType_t dt = nccl_dtype(in.scalar_type());
  check_nccl(ncclGroupStart(), name() + " all_to_allv");
  int64_t send_offset = 0, recv_offset = 0;
  for (int r = 0; r < size(); ++r) {
    if (send_rows[r] > 0)
      check_nccl(ncclSend(bytes_of(in) + send_offset * rb, send_rows[r] * re, dt, r, comm_, stream()),
                 name() + " all_to_allv");
    if (recv_rows[r] > 0)
      check_nccl(ncclRecv(bytes_of(out) + recv_offset * rb, recv_rows[r] * re, dt, r, comm_, stream()),
                 name() + " all_to_allv");
    send_offset += send_rows[r];
    recv_offset += recv_rows[r];
  }
  check_nccl(ncclGroupEnd(), name() + " all_to_allv");
  ready("all_to_allv");
  watched("all_to_allv");
}

void NcclCommunicator::do_broadcast(torch::Tensor& t, int root) {
  c10::cuda::CUDAGuard guard(device_);
  check_nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_dtype(t.scalar_type()), root, comm_, stream()),
             name() + " broadcast");
  ready("broadcast");
  watched("broadcast");
}

void NcclCommunicator::do_barrier() {
  torch::Tensor one = torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA, device_));
  do_all_reduce(one);
  synchronize();
}

namespace {
// About 1 ms at an H100's or H200's clock: far more than enqueueing one collective takes.
constexpr int64_t kTimingSpinCycles = 2'000'000;
}  // namespace

double NcclCommunicator::device_ms(const std::function<void()>& body) {
  c10::cuda::CUDAGuard guard(device_);
  if (!timing_start_) {
    check_cuda(cudaEventCreate(&timing_start_), name() + " timing event");
    check_cuda(cudaEventCreate(&timing_end_), name() + " timing event");
  }
  // The device spins first, long enough for the host to enqueue everything below, so the time
  // holds no host work (allocations, NCCL's enqueue); then a one-element all-reduce lines the
  // members up on the device, so the start event fires when every member has arrived.
  torch::Tensor one = torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA, device_));
  at::cuda::sleep(kTimingSpinCycles);
  if (size() > 1) do_all_reduce(one);
  check_cuda(cudaEventRecord(timing_start_, stream()), name() + " timing event");
  body();
  check_cuda(cudaEventRecord(timing_end_, stream()), name() + " timing event");
  synchronize();
  float ms = 0;
  check_cuda(cudaEventElapsedTime(&ms, timing_start_, timing_end_), name() + " timing event");
  return ms;
}

std::function<double()> NcclCommunicator::span(const std::function<void()>& body) {
  c10::cuda::CUDAGuard guard(device_);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream(), &capturing), name() + " span");
  if (capturing != cudaStreamCaptureStatusNone) {  // a graph's node, not a launch: nothing to time
    body();
    return [] { return 0.0; };
  }
  const auto event = [&] {
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreate(&e), name() + " span event");
    return std::shared_ptr<CUevent_st>(e, [](cudaEvent_t x) { cudaEventDestroy(x); });
  };
  const std::shared_ptr<CUevent_st> start = event(), end = event();
  check_cuda(cudaEventRecord(start.get(), stream()), name() + " span event");
  body();
  check_cuda(cudaEventRecord(end.get(), stream()), name() + " span event");
  // Read after the run has waited for its device (the benchmark's timed prefill does), so the
  // events are done and no wait here can hang.
  return [this, start, end] {
    c10::cuda::CUDAGuard read_guard(device_);
    check_cuda(cudaEventSynchronize(end.get()), name() + " span event");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start.get(), end.get()), name() + " span event");
    return double(ms);
  };
}

void NcclCommunicator::synchronize() {
  // Polls instead of cudaStreamSynchronize so that a hung collective becomes an error.
  c10::cuda::CUDAGuard guard(device_);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const cudaStream_t s = stream();
  for (int polls = 0;;) {
    const cudaError_t q = cudaStreamQuery(s);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) check_cuda(q, name() + " synchronize");
    ncclResult_t state = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &state), name() + " synchronize");
    const bool failed = state != ncclSuccess && state != ncclInProgress;
    const bool abort = abort_ && abort_->raised.load();
    const bool late = std::chrono::steady_clock::now() > deadline;
    if (failed || abort || late) {
      aborted_ = true;
      ncclCommAbort(comm_);
      if (failed) check_nccl(state, name() + " synchronize");
      if (abort) throw CommError(name() + ": aborted because another rank failed");
      throw CommError(name() + ": device work not done within " + std::to_string(timeout_.count()) +
                      " ms (a peer died, never joined, or is stuck)");
    }
    pause_before_poll(polls);
  }
}

}  // namespace lb
