#pragma once
// A kernel that holds its stream shut until the host opens it (kernels/cuda/stream_gate.cu), so
// that work queued behind it runs back to back on the device however long the host took to queue
// it. kernels/device_burst.h times decode bursts with it.
#include <cuda_runtime.h>

#include <cstdint>

namespace lb::cuda {

// One thread polls `open` (host memory mapped into the device) until it is nonzero, or until
// limit_ns have passed on the device's clock; then it sets `timed_out` (mapped too) to 1 in the
// second case. Both point to device addresses of mapped host memory.
cudaError_t hold_stream(const int* open, int* timed_out, int64_t limit_ns, cudaStream_t stream);

}  // namespace lb::cuda
