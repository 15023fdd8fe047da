#include "harness/bench/device_peaks.h"

#include "harness/runtime/timing.h"

namespace lb {

DevicePeaks measure_peaks(torch::Device device, torch::ScalarType dtype, int repeats) {
  torch::NoGradGuard no_grad;
  const bool gpu = device.is_cuda();
  const int64_t n = gpu ? 8192 : 512;
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  const torch::Tensor a = torch::randn({n, n}, o), b = torch::randn({n, n}, o);
  const double mm = median_ms([&] { torch::mm(a, b); }, device, repeats, gpu ? 50 : 20);
  const int64_t bytes = gpu ? (int64_t(1) << 30) : (int64_t(64) << 20);
  const torch::Tensor src = torch::empty({bytes}, torch::TensorOptions().device(device).dtype(torch::kUInt8)).fill_(1);
  torch::Tensor dst = torch::empty_like(src);
  const double copy = median_ms([&] { dst.copy_(src); }, device, repeats, gpu ? 50 : 20);
  return {2.0 * n * n * n / (mm * 1e-3) / 1e12, 2.0 * bytes / (copy * 1e-3) / 1e9};
}

}  // namespace lb
