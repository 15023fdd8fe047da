#include "harness/runtime/cuda_graph.h"

#include <stdexcept>

#if defined(LB_HAVE_CUDA) && TORCH_VERSION_MAJOR >= 2
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define LB_CUDA_GRAPHS 1
#endif

namespace lb {

#ifdef LB_CUDA_GRAPHS

bool cuda_graphs_supported() { return true; }

struct CapturedStep::Impl {
  at::cuda::CUDAGraph graph;
  torch::Tensor input, output;
};

CapturedStep::CapturedStep(Step step, const torch::Tensor& example) : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(example.is_cuda(), "CUDA graph capture needs CUDA tensors");
  const c10::cuda::CUDAGuard device(example.device());
  impl_->input = example.clone();
  step(impl_->input);  // warm-up, eager
  // A side stream (capture cannot run on the default stream) that first waits for the warm-up.
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, example.device().index());
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  {
    const c10::cuda::CUDAStreamGuard on_side(side);
    // Thread-local mode: other ranks' threads (one per GPU) keep working while this one captures.
    impl_->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      impl_->output = step(impl_->input);
    } catch (const std::exception& e) {
      // Leave capture mode, or the stream stays unusable; the step did something a graph cannot hold.
      try {
        impl_->graph.capture_end();
      } catch (...) {
      }
      throw std::runtime_error(std::string("CUDA graph capture of the decode step failed (use --cuda-graphs off): ") +
                               e.what());
    }
    impl_->graph.capture_end();
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(current);
}

CapturedStep::~CapturedStep() = default;

torch::Tensor CapturedStep::operator()(const torch::Tensor& input) {
  impl_->input.copy_(input);
  impl_->graph.replay();  // on the current stream, after the copy
  return impl_->output;
}

#else

bool cuda_graphs_supported() { return false; }

struct CapturedStep::Impl {};

CapturedStep::CapturedStep(Step, const torch::Tensor&) {
  throw std::runtime_error("CUDA graphs need a CUDA build with LibTorch 2");
}

CapturedStep::~CapturedStep() = default;

torch::Tensor CapturedStep::operator()(const torch::Tensor&) { throw std::logic_error("no CUDA graphs"); }

#endif

}  // namespace lb
