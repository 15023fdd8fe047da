#include "kernels/cuda/moe_pair_stream.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"

namespace lb::cuda {

namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
// A stage holds one work item's weight rows; a block keeps up to kInFlight bytes of stages loading.
// Two such blocks (gate/up, and the down kernel that starts early) fit an SM's shared memory.
constexpr int64_t kStageBytes = 32 * 1024, kInFlight = 96 * 1024;
constexpr int kMaxStages = 4;
constexpr int kVec = 8;  // 16-bit elements per 16-byte copy

__device__ inline void copy_16_async(void* to_shared, const void* from_global) {
  const unsigned to = static_cast<unsigned>(__cvta_generic_to_shared(to_shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(to), "l"(from_global) : "memory");
}
__device__ inline void commit_copies() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still loading.
template <int N> __device__ inline void wait_copies() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// A weight row in shared memory dotted with an input row in global memory (a few KB that every warp
// reads: L1), n elements, over the lanes of one warp; the sum on every lane.
template <typename T> __device__ inline float warp_dot(const T* row, const T* x, int n, int lane) {
  float acc = 0.0f;
  for (int c = lane * kVec; c < n; c += 32 * kVec) {
    const Pack<T, kVec> w = load_pack<T, kVec>(row + c), v = load_pack<T, kVec>(x + c);
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc += to_f(w.v[e]) * to_f(v.v[e]);
  }
  return warp_sum(acc);
}

// The block's items i = blockIdx.x, + gridDim.x, ...: item n of the block goes to stage n % S.
// load(i, stage) issues the item's copies, compute(i, stage) uses them; every thread commits one
// group per load (empty past the last item), so that waiting for all but S - 1 groups finds the
// oldest stage complete.
template <int S, typename Load, typename Compute>
__device__ inline void stream_items(int64_t items, const Load& load, const Compute& compute) {
  const int64_t first = blockIdx.x, stride = gridDim.x;
  for (int n = 0; n < S; ++n) {
    if (first + n * stride < items) load(first + n * stride, n);
    commit_copies();
  }
  int stage = 0;
  for (int64_t i = first; i < items; i += stride) {
    wait_copies<S - 1>();
    __syncthreads();  // every thread's copies of this stage have landed
    compute(i, stage);
    __syncthreads();  // every warp is done with the stage: it takes the item S ahead
    if (i + S * stride < items) load(i + S * stride, stage);
    commit_copies();
    stage = stage + 1 == S ? 0 : stage + 1;
  }
  wait_copies<0>();
}

// Item i: pair i / tiles, gate rows r0 .. r0 + R - 1 (r0 = (i % tiles) * R) and the same up rows;
// a stage holds them as [2R][hidden], gate rows first. Rows past inter load row r0 again, never stored.
template <typename T, int S>
__global__ void __launch_bounds__(kThreads) gate_up_kernel(const T* x, const T* gate_up, const int64_t* experts,
                                                          int64_t first_expert, int64_t held, const float* pair_weight,
                                                          T* act, int inter, int hidden, int k, int rows, int64_t tiles,
                                                          int64_t items) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int64_t stage_elems = int64_t(2) * rows * hidden;
  T* stages = reinterpret_cast<T*>(shared);
  float* dots = reinterpret_cast<float*>(stages + S * stage_elems);  // [2R]
  wait_for_previous_kernel();  // the routing
  allow_next_kernel();         // the down kernel may read the routing and load its weights now
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int per_row = hidden / kVec;
  const auto expert_of = [&](int64_t p) {
    const int64_t e = experts[p] - first_expert;
    return e >= 0 && e < held ? e : int64_t(-1);
  };
  const auto load = [&](int64_t i, int stage) {
    const int64_t p = i / tiles, r0 = (i % tiles) * rows, e = expert_of(p);
    if (e < 0) return;
    T* to = stages + stage * stage_elems;
    for (int c = threadIdx.x; c < 2 * rows * per_row; c += kThreads) {
      const int j = c / per_row, part = c % per_row;
      const int64_t r = r0 + (j < rows ? j : j - rows);
      const int64_t row = (r < inter ? r : r0) + (j < rows ? 0 : inter);
      copy_16_async(to + int64_t(j) * hidden + part * kVec, gate_up + (e * 2 * inter + row) * hidden + part * kVec);
    }
  };
  const auto compute = [&](int64_t i, int stage) {
    const int64_t p = i / tiles, r0 = (i % tiles) * rows;
    if (expert_of(p) < 0) return;  // the same on every thread: no barrier skipped unevenly
    const T* row = stages + stage * stage_elems;
    for (int j = warp; j < 2 * rows; j += kWarps) {
      const float d = warp_dot(row + int64_t(j) * hidden, x + (p / k) * hidden, hidden, lane);
      if (lane == 0) dots[j] = d;
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t < rows && r0 + t < inter) {
      const float g = dots[t], u = dots[rows + t];
      act[p * inter + r0 + t] = from_f<T>(g / (1.0f + __expf(-g)) * u * pair_weight[p]);
    }
  };
  stream_items<S>(items, load, compute);
}

// Item i: token i / tiles, output rows r0 .. r0 + R - 1 (r0 = (i % tiles) * R) of all k pairs; a
// stage holds [k][R][inter]. The weights of the first items load before the wait (the routing is
// complete: the gate/up kernel waited for it before letting this kernel start); act after it.
template <typename T, int S>
__global__ void __launch_bounds__(kThreads) down_sum_kernel(const T* act, const T* down, const int64_t* experts,
                                                           int64_t first_expert, int64_t held, T* out, int hidden,
                                                           int inter, int k, int rows, int64_t tiles, int64_t items) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int64_t stage_elems = int64_t(k) * rows * inter;
  T* stages = reinterpret_cast<T*>(shared);
  float* dots = reinterpret_cast<float*>(stages + S * stage_elems);  // [k][R]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int per_row = inter / kVec;
  const auto expert_of = [&](int64_t p) {
    const int64_t e = experts[p] - first_expert;
    return e >= 0 && e < held ? e : int64_t(-1);
  };
  bool waited = false;
  const auto load = [&](int64_t i, int stage) {
    const int64_t token = i / tiles, r0 = (i % tiles) * rows;
    T* to = stages + stage * stage_elems;
    for (int c = threadIdx.x; c < k * rows * per_row; c += kThreads) {
      const int j = c / (rows * per_row), rr = (c / per_row) % rows, part = c % per_row;
      const int64_t e = expert_of(token * k + j);
      if (e < 0) continue;
      const int64_t row = r0 + rr < hidden ? r0 + rr : r0;
      copy_16_async(to + (int64_t(j) * rows + rr) * inter + part * kVec, down + (e * hidden + row) * inter + part * kVec);
    }
  };
  const auto compute = [&](int64_t i, int stage) {
    if (!waited) {
      wait_for_previous_kernel();  // act, and `out` may be written
      allow_next_kernel();
      waited = true;
    }
    const int64_t token = i / tiles, r0 = (i % tiles) * rows;
    const T* stage_rows = stages + stage * stage_elems;
    for (int jr = warp; jr < k * rows; jr += kWarps) {
      const int j = jr / rows;
      const int64_t p = token * k + j;
      const float d = expert_of(p) < 0 ? 0.0f : warp_dot(stage_rows + int64_t(jr) * inter, act + p * inter, inter, lane);
      if (lane == 0) dots[jr] = d;
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t < rows && r0 + t < hidden) {
      float total = 0.0f;
      for (int j = 0; j < k; ++j) total += to_f(from_f<T>(dots[j * rows + t]));
      out[token * hidden + r0 + t] = from_f<T>(total);
    }
  };
  stream_items<S>(items, load, compute);
  if (!waited) {  // a block with no items still orders itself after the gate/up kernel
    wait_for_previous_kernel();
    allow_next_kernel();
  }
}

// Rows per item: as many as keep the stage within kStageBytes (at least one), and stages: as many
// as keep kInFlight bytes loading (2 to kMaxStages).
struct Plan {
  int rows, stages;
  size_t shared;
};
Plan plan_for(int64_t row_bytes, int64_t rows_per_unit, int64_t max_rows) {
  const int64_t unit = row_bytes * rows_per_unit;
  int64_t rows = kStageBytes / unit;
  rows = rows < 1 ? 1 : rows > max_rows ? max_rows : rows;
  const int64_t stage = unit * rows;
  int64_t stages = kInFlight / stage;
  stages = stages < 2 ? 2 : stages > kMaxStages ? kMaxStages : stages;
  return {int(rows), int(stages), size_t(stage * stages + rows_per_unit * rows * int64_t(sizeof(float)))};
}

template <typename Kernel, typename... Args>
cudaError_t launch_streamed(Kernel kernel, int64_t items, int sms, size_t shared, cudaStream_t stream, Args... args) {
  if (const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
      e != cudaSuccess)
    return e;
  const int64_t blocks = items < sms ? items : sms;
  return launch_chained(kernel, dim3(unsigned(blocks)), dim3(kThreads), shared, stream, args...);
}

// S as a template argument (cp.async.wait_group takes an immediate).
template <template <typename, int> class Kernel, typename T, typename Go>
cudaError_t with_stages(int stages, const Go& go) {
  switch (stages) {
    case 2: return go(Kernel<T, 2>::get());
    case 3: return go(Kernel<T, 3>::get());
    default: return go(Kernel<T, 4>::get());
  }
}
template <typename T, int S> struct GateUp {
  static auto get() { return gate_up_kernel<T, S>; }
};
template <typename T, int S> struct DownSum {
  static auto get() { return down_sum_kernel<T, S>; }
};

bool sizes_fit(Dtype dtype, int64_t hidden, int64_t inter, int64_t k) {
  return dtype != Dtype::F32 && hidden > 0 && inter > 0 && k > 0 && hidden % kVec == 0 && inter % kVec == 0 &&
         hidden <= INT32_MAX / 2 && inter <= INT32_MAX / 2 && 2 * hidden * 2 * 2 <= kInFlight &&
         k * inter * 2 * 2 <= kInFlight && k <= kThreads;
}

}  // namespace

bool moe_pair_stream_fits(Dtype dtype, int64_t hidden, int64_t inter, int64_t k) { return sizes_fit(dtype, hidden, inter, k); }

cudaError_t moe_pair_stream_gate_up(Dtype dtype, const void* x, const void* gate_up, const int64_t* experts,
                                    int64_t first_expert, int64_t held, const float* pair_weight, void* act,
                                    int64_t pairs, int64_t inter, int64_t hidden, int64_t k, int sms,
                                    cudaStream_t stream) {
  if (pairs == 0) return cudaSuccess;
  if (!sizes_fit(dtype, hidden, inter, k) || sms < 1) return cudaErrorInvalidValue;
  const Plan plan = plan_for(hidden * 2, 2, kThreads);
  const int64_t tiles = (inter + plan.rows - 1) / plan.rows, items = pairs * tiles;
  return with_element_type(dtype, [&](auto e) -> cudaError_t {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      return with_stages<GateUp, T>(plan.stages, [&](auto kernel) {
        return launch_streamed(kernel, items, sms, plan.shared, stream, static_cast<const T*>(x),
                               static_cast<const T*>(gate_up), experts, first_expert, held, pair_weight,
                               static_cast<T*>(act), int(inter), int(hidden), int(k), plan.rows, tiles, items);
      });
    }
  });
}

cudaError_t moe_pair_stream_down_sum(Dtype dtype, const void* act, const void* down, const int64_t* experts,
                                     int64_t first_expert, int64_t held, void* out, int64_t tokens, int64_t k,
                                     int64_t hidden, int64_t inter, int sms, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  if (!sizes_fit(dtype, hidden, inter, k) || sms < 1) return cudaErrorInvalidValue;
  const Plan plan = plan_for(inter * 2, k, kThreads);
  const int64_t tiles = (hidden + plan.rows - 1) / plan.rows, items = tokens * tiles;
  return with_element_type(dtype, [&](auto e) -> cudaError_t {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) != 2) {
      return cudaErrorInvalidValue;
    } else {
      return with_stages<DownSum, T>(plan.stages, [&](auto kernel) {
        return launch_streamed(kernel, items, sms, plan.shared, stream, static_cast<const T*>(act),
                               static_cast<const T*>(down), experts, first_expert, held, static_cast<T*>(out),
                               int(hidden), int(inter), int(k), plan.rows, tiles, items);
      });
    }
  });
}

}  // namespace lb::cuda
