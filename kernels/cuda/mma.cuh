#pragma once
// Tensor-core building blocks for sm_80 and later, shared by the kernels that use them: the 16x8x16
// matrix product with fp32 accumulators (mma.sync), 8x8 tile loads from shared memory into its
// fragments (ldmatrix), asynchronous 16-byte copies into shared memory (cp.async), and two fp32
// values rounded into one 32-bit register of a 16-bit type.
//
// Fragments of mma.m16n8k16.row.col, for lane (g, q) = (lane / 4, lane % 4):
//   A (16 x 16, 4 registers): rows g and g + 8, columns 2q, 2q + 1 and 2q + 8, 2q + 9;
//   B (16 x 8, 2 registers):  rows (the K index) 2q, 2q + 1 and 2q + 8, 2q + 9 of column g;
//   C (16 x 8, 4 floats):     rows g and g + 8, columns 2q, 2q + 1.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace lb::cuda {

template <typename T> __device__ inline void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ inline void mma_16x8x16<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ inline void mma_16x8x16<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 tiles of 16-bit values; lane l names row l % 8 of tile l / 8 (16 contiguous bytes).
// Lane (g, q) gets elements (g, 2q) and (g, 2q + 1) of each tile; with `trans`, (2q, g) and (2q + 1, g).
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// Two 8x8 tiles: lanes 0-15 name the rows (0-7 of the first tile, 8-15 of the second).
__device__ inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(s));
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// 16 bytes from global to shared memory without passing through registers; both 16-byte aligned.
__device__ inline void cp_async_16(void* shared, const void* global) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(global));
}
// The same with an L2 eviction policy from createpolicy (evict_first_policy).
__device__ inline void cp_async_16_hinted(void* shared, const void* global, uint64_t policy) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(s), "l"(global), "l"(policy));
}
// An L2 policy under which the lines a copy brings in are the first evicted: for bytes read once.
__device__ inline uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending> __device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(pending)); }

// lo in the low half, hi in the high half: the order of consecutive elements in memory and in fragments.
template <typename T> __device__ inline uint32_t pack_pair(float lo, float hi);
template <> __device__ inline uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ inline uint32_t pack_pair<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace lb::cuda
