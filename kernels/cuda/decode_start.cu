#include "kernels/cuda/decode_start.h"

#include "kernels/cuda/chained_launch.cuh"

namespace lb::cuda {

namespace {

constexpr int kThreads = 256;

// Block b copies the embedding row of query b; block 0 also reads the positions, and only after
// every one of them is read (one block: one barrier) moves the lengths on.
__global__ void __launch_bounds__(kThreads)
    decode_start_kernel(const int64_t* ids, const uint4* table, int64_t table_rows, int64_t row_units, uint4* x,
                        int64_t n, int64_t* lengths, int64_t slots, const int64_t* slot, int64_t capacity,
                        int64_t* pos, int64_t* read_len, int64_t* row) {
  allow_next_kernel();
  wait_for_previous_kernel();
  const int64_t b = blockIdx.x;
  const int64_t id = ids[b];
  if (id < 0 || id >= table_rows) __trap();
  for (int64_t u = threadIdx.x; u < row_units; u += blockDim.x) x[b * row_units + u] = table[id * row_units + u];
  if (b != 0) return;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t p = lengths[slot[i]];
    pos[i] = p;
    read_len[i] = p + 1;
    row[i] = p + capacity * slot[i];
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < slots; s += blockDim.x) lengths[s] += 1;
}

}  // namespace

cudaError_t decode_step_start(const int64_t* ids, const void* table, int64_t table_rows, int64_t row_bytes, void* x,
                              int64_t n, int64_t* lengths, int64_t slots, const int64_t* slot, int64_t capacity,
                              int64_t* pos, int64_t* read_len, int64_t* row, cudaStream_t stream) {
  if (n < 0 || n > int64_t(INT32_MAX) || row_bytes < 0 || row_bytes % 16 != 0 ||
      (reinterpret_cast<uintptr_t>(table) | reinterpret_cast<uintptr_t>(x)) % 16 != 0)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return launch_chained(decode_start_kernel, dim3(unsigned(n)), dim3(kThreads), 0, stream, ids,
                        static_cast<const uint4*>(table), table_rows, row_bytes / 16, static_cast<uint4*>(x), n,
                        lengths, slots, slot, capacity, pos, read_len, row);
}

}  // namespace lb::cuda
