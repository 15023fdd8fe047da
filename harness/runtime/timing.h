#pragma once
// Timing a piece of device work for the benchmarks: batches long enough to be measured, device
// waits around each batch, the median over repeats.
#include <torch/torch.h>

#include <functional>

namespace lb {

// Median milliseconds per call of `fn`: after one untimed call, and a second that sizes the
// batch, each of `repeats` timed batches calls it until `min_batch_ms` has passed (at least once).
double median_ms(const std::function<void()>& fn, torch::Device device, int repeats, double min_batch_ms = 0);

double median(std::vector<double> values);

// A speedup of `times` against `base_times` measured in interleaved rounds (round k timed both back
// to back): the median of the rounds' base / time ratios, so that a drift between rounds cancels.
// Rounds past the shorter list are left out; 0 when there is none.
double median_round_speedup(const std::vector<double>& base_times, const std::vector<double>& times);

}  // namespace lb
