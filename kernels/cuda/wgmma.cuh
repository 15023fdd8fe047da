#pragma once
// Hopper warpgroup tensor-core products (wgmma, sm_90a only), for the kernels that use them: four
// warps (a warpgroup) multiply a 64 x 16 tile A by a 16 x N tile B into a 64 x N fp32 accumulator
// they share, both tiles read from shared memory by the tensor cores themselves, asynchronously.
//
// Both operands here are K-major (each row's K elements contiguous: weight rows as A, input rows as
// B) in tiles of 64 K elements, 128 bytes a row, with the 128-byte swizzle: the 16-byte chunk c of
// row r sits at chunk c ^ (r % 8) of its row, and every tile starts on a 1024-byte boundary. The
// descriptor names a tile's first row; the k-th 16-column step of a 64-column tile starts 32 k
// bytes further, and the hardware applies the swizzle to the address it forms.
//
// Accumulator layout, for thread t of the warpgroup (warp w = t / 32, lane = t % 32, g = lane / 4,
// q = lane % 4): d[4j + i] is row 16w + g + 8 (i / 2), column 8j + 2q + i % 2: mma.sync's C layout
// repeated over the N / 8 column tiles.
//
// Ordering: a wgmma reads shared memory through the async proxy, so data written there by cp.async
// or plain stores needs fence_async_shared() in the writing thread (then a barrier) first;
// wgmma_fence() precedes the first wgmma after the accumulators were touched by other code;
// wgmma_commit() closes a group of issued products and wgmma_wait<n>() waits until at most n groups
// are still running, after which keep_accumulator() stops the compiler from reading the
// accumulators any earlier.
#include "kernels/cuda/tma.cuh"  // fence_async_shared

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace lb::cuda {

// A K-major, 128-byte-swizzled tile at `tile` (1024-byte aligned, plus 32 bytes per 16-column step).
__device__ inline uint64_t wgmma_tile(const void* tile) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
  constexpr uint64_t kRowGroupBytes = 1024;  // 8 rows of 128 bytes: the stride between core matrices
  return uint64_t((address & 0x3FFFF) >> 4) | uint64_t(1) << 16 | (kRowGroupBytes >> 4) << 32 | uint64_t(1) << 62;
}

__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ inline void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int pending> __device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(pending) : "memory");
}
template <int n> __device__ inline void keep_accumulator(float (&d)[n]) {
#pragma unroll
  for (int i = 0; i < n; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D (64 x N, fp32, N / 2 values a thread) += A (64 x 16) B (16 x N), operands by descriptor; N of
// 32, 64, 96 and 128, for bf16 and f16. The asm names every accumulator: the lists below are
// built 16 and 32 operands at a time, the descriptors and the scale-d flag follow the last one.
template <typename T, int N> struct Wgmma;

#define LB_WGMMA_REGS_0_16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define LB_WGMMA_REGS_0 \
  LB_WGMMA_REGS_0_16 ", " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define LB_WGMMA_REGS_32_48 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define LB_WGMMA_REGS_32 \
  LB_WGMMA_REGS_32_48 ", " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define LB_WGMMA_ACC8(d, i)                                                                 \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define LB_WGMMA_ACC16(d, i) LB_WGMMA_ACC8(d, i), LB_WGMMA_ACC8(d, i + 8)
#define LB_WGMMA_ACC32(d, i) LB_WGMMA_ACC16(d, i), LB_WGMMA_ACC16(d, i + 16)
#define LB_WGMMA_ACC48(d, i) LB_WGMMA_ACC32(d, i), LB_WGMMA_ACC16(d, i + 32)
#define LB_WGMMA_ACC64(d, i) LB_WGMMA_ACC32(d, i), LB_WGMMA_ACC32(d, i + 32)
// REGS: the accumulators' names; ACC: the macro of their operands; A, B, P: the operand numbers after them.
#define LB_WGMMA(T, TYPE, N, REGS, ACC, A, B, P)                                                             \
  template <> struct Wgmma<T, N> {                                                                           \
    static __device__ inline void run(float (&d)[N / 2], uint64_t a, uint64_t b) {                          \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" P ", 0;\n"                                          \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " {" REGS "}, %" A ", %" B \
                   ", p, 1, 1, 0, 0;\n}\n"                                                                    \
                   : ACC(d, 0)                                                                               \
                   : "l"(a), "l"(b), "r"(1));                                                                \
    }                                                                                                        \
  };
#define LB_WGMMA_BOTH_TYPES(N, REGS, ACC, A, B, P)          \
  LB_WGMMA(__nv_bfloat16, "bf16", N, REGS, ACC, A, B, P) \
  LB_WGMMA(__half, "f16", N, REGS, ACC, A, B, P)
LB_WGMMA_BOTH_TYPES(32, LB_WGMMA_REGS_0_16, LB_WGMMA_ACC16, "16", "17", "18")
LB_WGMMA_BOTH_TYPES(64, LB_WGMMA_REGS_0, LB_WGMMA_ACC32, "32", "33", "34")
LB_WGMMA_BOTH_TYPES(96, LB_WGMMA_REGS_0 ", " LB_WGMMA_REGS_32_48, LB_WGMMA_ACC48, "48", "49", "50")
LB_WGMMA_BOTH_TYPES(128, LB_WGMMA_REGS_0 ", " LB_WGMMA_REGS_32, LB_WGMMA_ACC64, "64", "65", "66")
#undef LB_WGMMA_BOTH_TYPES
#undef LB_WGMMA

// D (64 x 256) += A (64 x 16) B (16 x 256), D held as its two 64 x 128 halves (columns 0-127 in
// lo, 128-255 in hi, each in the layout above): the widest product, which reads the fewest
// operand bytes from shared memory per multiply.
template <typename T> struct Wgmma256;
#define LB_WGMMA_REGS_64_80 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define LB_WGMMA_REGS_80_96 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define LB_WGMMA_REGS_96_112 \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define LB_WGMMA_REGS_112_128 \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define LB_WGMMA256(T, TYPE)                                                                                        \
  template <> struct Wgmma256<T> {                                                                                 \
    static __device__ inline void run(float (&lo)[64], float (&hi)[64], uint64_t a, uint64_t b) {                  \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                   \
                   "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" LB_WGMMA_REGS_0 ", "          \
                   LB_WGMMA_REGS_32 ", " LB_WGMMA_REGS_64_80 ", " LB_WGMMA_REGS_80_96 ", " LB_WGMMA_REGS_96_112 \
                   ", " LB_WGMMA_REGS_112_128 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"                                  \
                   : LB_WGMMA_ACC64(lo, 0), LB_WGMMA_ACC64(hi, 0)                                                  \
                   : "l"(a), "l"(b), "r"(1));                                                                     \
    }                                                                                                              \
  };
LB_WGMMA256(__nv_bfloat16, "bf16")
LB_WGMMA256(__half, "f16")
#undef LB_WGMMA256
#undef LB_WGMMA_REGS_112_128
#undef LB_WGMMA_REGS_96_112
#undef LB_WGMMA_REGS_80_96
#undef LB_WGMMA_REGS_64_80
#undef LB_WGMMA_ACC64
#undef LB_WGMMA_ACC48
#undef LB_WGMMA_ACC32
#undef LB_WGMMA_ACC16
#undef LB_WGMMA_ACC8
#undef LB_WGMMA_REGS_32
#undef LB_WGMMA_REGS_32_48
#undef LB_WGMMA_REGS_0
#undef LB_WGMMA_REGS_0_16

}  // namespace lb::cuda
