#include "harness/runtime/timing.h"

#include "harness/runtime/device.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace lb {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

double median_round_speedup(const std::vector<double>& base_times, const std::vector<double>& times) {
  std::vector<double> ratios;
  for (size_t k = 0; k < base_times.size() && k < times.size(); ++k) ratios.push_back(base_times[k] / times[k]);
  return median(ratios);
}

double median_ms(const std::function<void()>& fn, torch::Device device, int repeats, double min_batch_ms) {
  using clock = std::chrono::steady_clock;
  fn();
  synchronize(device);
  auto t0 = clock::now();
  fn();
  synchronize(device);
  const double once = std::max(1e-3, std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  const int calls = std::max(1, int(std::ceil(min_batch_ms / once)));
  std::vector<double> per_call;
  for (int r = 0; r < repeats; ++r) {
    synchronize(device);
    t0 = clock::now();
    for (int i = 0; i < calls; ++i) fn();
    synchronize(device);
    per_call.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count() / calls);
  }
  return median(per_call);
}

}  // namespace lb
