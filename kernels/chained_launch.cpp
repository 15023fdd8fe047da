#include "kernels/chained_launch.h"

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/chained_launch.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

bool chained_launches_on(const torch::Device& device) {
#ifdef LB_HAVE_CUDA
  if (!device.is_cuda()) return false;
  const c10::cuda::CUDAGuard guard(device);
  return cuda::chained_launch_enabled();
#else
  (void)device;
  return false;
#endif
}

}  // namespace lb
