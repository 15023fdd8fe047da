#include "kernels/cuda/stream_gate.h"

namespace lb::cuda {

namespace {

__device__ inline uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void gate_kernel(const volatile int* open, int* timed_out, int64_t limit_ns) {
  const uint64_t start = global_ns();
  while (*open == 0) {
    if (global_ns() - start > uint64_t(limit_ns)) {
      *timed_out = 1;
      return;
    }
    __nanosleep(1000);
  }
}

}  // namespace

cudaError_t hold_stream(const int* open, int* timed_out, int64_t limit_ns, cudaStream_t stream) {
  gate_kernel<<<1, 1, 0, stream>>>(open, timed_out, limit_ns);
  return cudaGetLastError();
}

}  // namespace lb::cuda
