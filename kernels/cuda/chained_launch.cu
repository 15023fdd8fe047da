#include "kernels/cuda/chained_launch.cuh"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lb::cuda {

namespace {

bool switched_off_by_environment() {
  static const bool off = [] {
    const char* value = std::getenv("LB_CHAINED_LAUNCH");
    return value != nullptr && std::strcmp(value, "0") == 0;
  }();
  return off;
}

// Per device: 0 not asked yet, 1 no, 2 yes.
std::array<std::atomic<int>, 64> device_answers{};

}  // namespace

bool chained_launch_enabled() {
  if (switched_off_by_environment()) return false;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= int(device_answers.size())) return false;
  int answer = device_answers[size_t(device)].load(std::memory_order_relaxed);
  if (answer == 0) {
    int major = 0;
    // A failed query only means no chaining; the launch itself reports any real error.
    answer = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 9 ? 2 : 1;
    device_answers[size_t(device)].store(answer, std::memory_order_relaxed);
  }
  return answer == 2;
}

}  // namespace lb::cuda
