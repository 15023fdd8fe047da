#pragma once
// Whether the fused path's CUDA kernels launch chained on a device (programmatic dependent launch,
// kernels/cuda/chained_launch.cuh): on GPUs of compute capability 9.0 and later unless
// LB_CHAINED_LAUNCH=0. Records carry it, so an A/B of the two is told apart by more than a file name.
#include <torch/torch.h>

namespace lb {

bool chained_launches_on(const torch::Device& device);

}  // namespace lb
