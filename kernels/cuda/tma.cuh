#pragma once
// Hopper's tensor memory accelerator (TMA, sm_90) and the shared-memory barriers its copies land on
// (mbarrier), for the kernels that use them: one thread asks for a box of a tensor map (encoded on
// the host by cuTensorMapEncodeTiled) to be copied into shared memory, announcing the bytes on a
// barrier; the threads that read the box wait on that barrier's phase. A barrier's phase flips each
// time its arrivals and announced bytes are all in, so a stage reused every n steps is waited on
// with parity (step / n) % 2.
#include <cuda.h>

#include <cstdint>

namespace lb::cuda {

__device__ inline uint32_t shared_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
// Orders this thread's earlier plain (generic-proxy) accesses of shared memory before later
// async-proxy ones (TMA copies, wgmma reads) of the same bytes; a block barrier must follow when
// another thread issues those.
__device__ inline void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ inline void barrier_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(bar)), "r"(count) : "memory");
}
// Makes the barriers this thread initialized visible to the block's (and the TMA unit's) use of
// them; a block barrier must still follow before other threads wait on them.
__device__ inline void barrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
// One arrival that also announces `bytes` of copies still to land on the barrier.
__device__ inline void barrier_expect(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes)
               : "memory");
}
__device__ inline void barrier_wait(uint64_t* bar, unsigned parity) {
  unsigned done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(shared_address(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
// A box of the tensor map (columns col.., rows row..) into shared memory, swizzled as the map says;
// its bytes land on `bar`.
__device__ inline void tensor_copy(void* dst, const CUtensorMap* map, int col, int row, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      ::"r"(shared_address(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(shared_address(bar))
      : "memory");
}

}  // namespace lb::cuda
