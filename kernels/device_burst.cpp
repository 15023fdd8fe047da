#include "kernels/device_burst.h"

#include <chrono>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/stream_gate.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

#ifdef LB_HAVE_CUDA
constexpr int64_t kGateLimitNs = 250'000'000;

// Two ints of mapped host memory ([0] open, [1] timed out) and a pair of timing events. Whatever
// happens in between, the gate is opened and the stream drained before the memory is freed.
class HeldStream {
 public:
  explicit HeldStream(cudaStream_t stream) : stream_(stream) {
    check_launch(cudaHostAlloc(reinterpret_cast<void**>(&flags_), 2 * sizeof(int), cudaHostAllocMapped),
                 "stream gate flags");
    flags_[0] = flags_[1] = 0;
    check_launch(cudaHostGetDevicePointer(reinterpret_cast<void**>(&device_flags_), flags_, 0), "stream gate flags");
    check_launch(cudaEventCreate(&start_), "burst timing event");
    check_launch(cudaEventCreate(&stop_), "burst timing event");
    check_launch(cuda::hold_stream(device_flags_, device_flags_ + 1, kGateLimitNs, stream_), "stream gate kernel");
    check_launch(cudaEventRecord(start_, stream_), "burst timing event");
  }
  HeldStream(const HeldStream&) = delete;
  HeldStream& operator=(const HeldStream&) = delete;
  ~HeldStream() {
    open();
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaFreeHost(flags_);
  }
  void end() { check_launch(cudaEventRecord(stop_, stream_), "burst timing event"); }
  void open() { reinterpret_cast<volatile int*>(flags_)[0] = 1; }
  // The burst's device milliseconds, once it has run; none if the gate gave up.
  std::optional<double> device_ms() {
    check_launch(cudaEventSynchronize(stop_), "burst timing event");
    float ms = 0;
    check_launch(cudaEventElapsedTime(&ms, start_, stop_), "burst timing event");
    if (reinterpret_cast<volatile int*>(flags_)[1] != 0) return std::nullopt;
    return double(ms);
  }

 private:
  cudaStream_t stream_;
  int* flags_ = nullptr;
  int* device_flags_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};
#endif

}  // namespace

BurstTime time_held_burst(const std::function<void()>& queue, torch::Device device) {
  BurstTime t;
#ifdef LB_HAVE_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAGuard guard(device);
    HeldStream held(c10::cuda::getCurrentCUDAStream(device.index()).stream());
    const auto t0 = std::chrono::steady_clock::now();
    queue();
    t.queue_ms = ms_since(t0);
    held.end();
    held.open();
    t.device_ms = held.device_ms();
    return t;
  }
#endif
  const auto t0 = std::chrono::steady_clock::now();
  queue();
  t.queue_ms = ms_since(t0);
  return t;
}

}  // namespace lb
