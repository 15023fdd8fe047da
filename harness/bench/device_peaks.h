#pragma once
// What the device itself reaches, measured in the same run as a benchmark, so that achieved
// TFLOP/s and GB/s are stated as shares of numbers from the same machine.
#include <torch/torch.h>

namespace lb {

struct DevicePeaks {
  double matmul_tflops = 0;  // a large square matmul in the benchmark's dtype
  double copy_gbps = 0;      // device memory: bytes read plus written per second by a large copy
};

// Median of `repeats` timed batches each (8192^3 matmul and a 1 GiB copy on a GPU; smaller on CPU).
DevicePeaks measure_peaks(torch::Device device, torch::ScalarType dtype, int repeats);

}  // namespace lb
