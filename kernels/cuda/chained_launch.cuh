#pragma once
// Programmatic dependent launch (sm_90 and later): a kernel launched with launch_chained may start
// while the kernel before it on the stream is still running, once every block of that one has
// called allow_next_kernel (or exited). A decode step is a chain of small kernels, each of which
// otherwise waits for the previous one to drain and then ramps up from an empty GPU; chained, the
// next kernel's blocks are resident when the previous one ends, and a kernel may read what no
// earlier kernel writes (its weights) before it waits.
//
// The rule every chained kernel follows: call wait_for_previous_kernel before reading anything an
// earlier kernel wrote and before writing anything at all (an earlier kernel may still read it),
// in every thread that does so. The wait returns once the previous grid has completed and its
// writes are visible; since that grid waited on its own predecessor in turn, everything before it
// is complete too. Without the launch attribute (or before sm_90) both calls are no-ops.
#include "kernels/cuda/chained_launch.h"

#include <cuda_runtime.h>

#include <utility>

namespace lb::cuda {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <typename... Params, typename... Args>
cudaError_t launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream,
                           Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = chained_launch_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace lb::cuda
