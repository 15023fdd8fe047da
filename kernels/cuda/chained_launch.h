#pragma once
// Host side of chained launches (chained_launch.cuh), for code that is not CUDA source.
namespace lb::cuda {

// Whether launch_chained sets the programmatic-launch attribute on the current device: compute
// capability 9.0 and later, unless LB_CHAINED_LAUNCH=0 (to measure what chaining saves).
bool chained_launch_enabled();

}  // namespace lb::cuda
