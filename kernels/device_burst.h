#pragma once
// The device's time for a burst of queued work (a benchmark's decode steps). The stream is held
// shut by a gate kernel (kernels/cuda/stream_gate.h) while the host queues the burst and opened
// after, so that events bracket the device running the burst back to back: what a decode step
// costs in an engine whose host stays ahead of its device, without the host's start-up latency of
// a burst (on the H200 machine the first CUDA-graph launch of a burst took ~90 us of host time
// while the device sat idle: a quarter of a Qwen3 batch-1 step, added once per burst of 8).
// NVIDIA's nvbench holds its streams the same way to time launches.
#include <torch/torch.h>

#include <functional>
#include <optional>

namespace lb {

struct BurstTime {
  double queue_ms = 0;              // host: the time `queue` took
  std::optional<double> device_ms;  // device: the burst, from the gate's opening to its end
};

// `queue` puts the burst on the current stream of `device`. No device time on the CPU, or where the
// gate gave up waiting (250 ms): `queue` waited on the device itself (a host read inside a step),
// so the burst did not run held. Ranks line up before the call (a barrier: the world's is a
// collective on the device, which a held stream would stall) and queue the same work, so their
// gates open nearly together; the collectives inside the burst wait for the latest.
BurstTime time_held_burst(const std::function<void()>& queue, torch::Device device);

}  // namespace lb
