#pragma once
// A step of one tensor in, one tensor out, captured once in a CUDA graph and replayed: a replay
// launches the whole step (every kernel and NCCL call in it) at once, so the host's per-op dispatch
// is paid once at capture instead of at every step. The input is copied into a buffer the graph
// reads; the output is the graph's own tensor, overwritten by the next replay.
#include <torch/torch.h>

#include <functional>
#include <memory>

namespace lb {

// Whether this build can capture CUDA graphs (a CUDA build with LibTorch 2).
bool cuda_graphs_supported();

class CapturedStep {
 public:
  using Step = std::function<torch::Tensor(const torch::Tensor&)>;
  // Runs `step` once on `example` eagerly (its lazy work: allocations, library handles, measured
  // algorithm picks), then captures it on a side stream. Both calls have the step's side effects
  // (a warm-up step writes the KV cache): the caller resets what it needs afterwards. When `step`
  // is collective, every rank constructs its CapturedStep at the same point.
  CapturedStep(Step step, const torch::Tensor& example);
  ~CapturedStep();
  CapturedStep(const CapturedStep&) = delete;
  CapturedStep& operator=(const CapturedStep&) = delete;

  // `input` must have the example's shape, dtype and device.
  torch::Tensor operator()(const torch::Tensor& input);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb
