#include "kernels/cuda/decode_attention.h"

#include "kernels/cuda/chained_launch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/mma.cuh"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace lb::cuda {

namespace {

// Every block works in three steps over its chunk of cnt positions, all in fp32: (1) the scores of
// its heads against each key into shared memory, (2) per head, the chunk's max m and
// p_j = exp(score_j - m) in place with their sum l, (3) sum_j p_j * value_j. Each score costs one
// exp and no running sum is rescaled; MLA, whose values are its keys, reads the latent rows twice
// for it (the second time mostly from L1 or L2).

constexpr int kGqaWarps = 4;
constexpr int kMlaWarps = 8;
constexpr int kMlaHeadsPerWarp = 2;
static_assert(kMlaWarps * kMlaHeadsPerWarp == kMlaHeadsPerBlock, "MLA heads per block");

// A row's valid length: its len clamped to [0, cap], or 0 for a slot outside the cache (nothing
// is read for it).
__device__ inline int64_t valid_length(int64_t slot, int64_t len, int64_t slots, int64_t cap) {
  if (slot < 0 || slot >= slots) return 0;
  return len < 0 ? 0 : len > cap ? cap : len;
}

// The sums of N values over each aligned group of G lanes (N <= G, both powers of two), with
// log2(N) + log2(G) shuffles instead of N * log2(G): at each of the first log2(N) steps a lane
// keeps half of its values and adds its partner's copy of that half. Lane r of a group ends with
// the total of value r / (G / N).
template <int N, int G> __device__ inline float group_sum_transposed(float (&v)[N], int lane) {
  static_assert(N <= G && G <= 32 && (N & (N - 1)) == 0 && (G & (G - 1)) == 0, "powers of two, N <= G <= 32");
  int offset = G / 2;
#pragma unroll
  for (int count = N; count > 1; count /= 2, offset /= 2) {
    const bool upper = lane & offset;
#pragma unroll
    for (int k = 0; k < count / 2; ++k) {
      const float give = upper ? v[k] : v[k + count / 2];
      const float keep = upper ? v[k + count / 2] : v[k];
      v[k] = keep + __shfl_xor_sync(0xffffffffu, give, offset);
    }
  }
  for (; offset > 0; offset /= 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], offset);
  return v[0];
}

// Step 2 for one head, by one warp: scores[0..cnt) become exp(score - max) in place, and the
// max and the sum of those go to max_sum[0] and max_sum[1].
__device__ inline void softmax_in_place(float* scores, int cnt, int lane, float* max_sum) {
  float m = -INFINITY;
  for (int j = lane; j < cnt; j += 32) m = fmaxf(m, scores[j]);
  m = warp_max(m);
  float l = 0.0f;
  for (int j = lane; j < cnt; j += 32) {
    const float p = expf(scores[j] - m);
    scores[j] = p;
    l += p;
  }
  l = warp_sum(l);
  if (lane == 0) max_sum[0] = m, max_sum[1] = l;
}

// How a row of D elements of T is spread over the lanes that read it: kLanes lanes (a power of
// two, at most a warp) of kPacksPerLane 16-byte packs each; lane r holds packs p * kLanes + r, so
// each load instruction of a row group reads contiguous memory.
template <typename T, int D> struct RowSplit {
  static constexpr int kVec = 16 / int(sizeof(T));
  static constexpr int kPacks = D / kVec;
  static constexpr int kLanes = kPacks < 32 ? kPacks : 32;
  static constexpr int kPacksPerLane = kPacks / kLanes;
  static constexpr int kRowsPerWarp = 32 / kLanes;
  static constexpr int kPerLane = kPacksPerLane * kVec;
  static_assert(D % kVec == 0 && kPacks % kLanes == 0, "row size");
  __device__ static int element(int x, int r) { return ((x / kVec) * kLanes + r) * kVec + x % kVec; }
};

template <typename T, int V> __device__ inline void unpack(const Pack<T, V>& pack, float* out) {
#pragma unroll
  for (int e = 0; e < V; ++e) out[e] = to_f(pack.v[e]);
}

// Step 1's inner product over one pack of a key row: dot[h] += q[h][first + e] * key[e] for every head.
template <typename T, int V, int H, int N>
__device__ inline void add_dots(float* dot, const float (&q)[H][N], int first, const Pack<T, V>& key) {
  float x[V];
  unpack(key, x);
#pragma unroll
  for (int e = 0; e < V; ++e)
#pragma unroll
    for (int h = 0; h < H; ++h) dot[h] += q[h][first + e] * x[e];
}

// Step 3's update with one pack of a value row: acc[h][first + e] += w[h] * value[e] for every head.
template <typename T, int V, int H, int N>
__device__ inline void add_weighted(float (&acc)[H][N], int first, const float (&w)[H], const Pack<T, V>& value) {
  float x[V];
  unpack(value, x);
#pragma unroll
  for (int e = 0; e < V; ++e)
#pragma unroll
    for (int h = 0; h < H; ++h) acc[h][first + e] += w[h] * x[e];
}

struct GqaParams {
  const void *q, *k, *v;
  const int64_t *slot, *len;
  DecodePartials partials;
  int64_t heads, kv_heads, slots, cap;
  int chunk, chunks, head_tiles;
  float scale;
};

// Block (chunk, KV head * head_tiles + tile, row): up to kGqaHeadsPerBlock query heads of one KV
// head against positions c * chunk .. c * chunk + cnt - 1 of the row's slot. Warps split the positions; in step 1
// the lanes of a row group split the head dimension and each key serves every head of the block.
template <typename T, int D, int kW>
__global__ void __launch_bounds__(kW * 32) gqa_chunk_kernel(GqaParams p) {
  allow_next_kernel();
  wait_for_previous_kernel();
  using Split = RowSplit<T, D>;
  constexpr int kHeads = int(kGqaHeadsPerBlock), kVec = Split::kVec, kLanes = Split::kLanes;
  constexpr int kPacksPerLane = Split::kPacksPerLane, kPerLane = Split::kPerLane;
  constexpr int kStep = kW * Split::kRowsPerWarp;  // rows the block reads at once
  // Steps whose loads are in flight together: with 2, a batch of 64 rows read its keys and values at
  // 0.73 TB/s (H200, Qwen3, 1024 positions), the blocks waiting on memory with too little in flight.
  constexpr int kUnroll = 4;
  static_assert(kLanes >= kHeads, "a row group reduces all heads' scores at once");
  const int64_t i = blockIdx.z;
  const int c = blockIdx.x;
  const int64_t kv_head = blockIdx.y / p.head_tiles;
  const int tile = int(blockIdx.y % p.head_tiles);
  const int64_t group = p.heads / p.kv_heads;
  const int64_t h0 = kv_head * group + int64_t(tile) * kHeads;  // the block's first query head
  const int hb = int(group - int64_t(tile) * kHeads < kHeads ? group - int64_t(tile) * kHeads : kHeads);
  const int64_t s = p.slot[i];
  const int64_t length = valid_length(s, p.len[i], p.slots, p.cap);
  const int64_t start = int64_t(c) * p.chunk;
  if (start >= length) return;  // the whole block: no barrier is reached
  const int cnt = int(length - start < p.chunk ? length - start : p.chunk);

  extern __shared__ float shared[];
  float* scores = shared;  // [kHeads][chunk]; then, reused, [kW][kHeads][D]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = lane % kLanes, sub = lane / kLanes;  // place in the row; row group within the warp
  // Row group `sub` of this warp takes positions j0 + sub for j0 = warp_first, + kStep, ...: the
  // loops run over j0, so their bounds are the same on every lane of the warp (shuffles inside).
  const int warp_first = warp * Split::kRowsPerWarp;
  const int64_t row_stride = p.kv_heads * D;                  // between consecutive positions
  const int64_t base = ((s * p.cap + start) * p.kv_heads + kv_head) * D;
  const T* k = static_cast<const T*>(p.k) + base;
  const T* v = static_cast<const T*>(p.v) + base;

  {  // step 1
    float qf[kHeads][kPerLane];
    const T* q = static_cast<const T*>(p.q) + (i * p.heads + h0) * D;
#pragma unroll
    for (int h = 0; h < kHeads; ++h)
#pragma unroll
      for (int x = 0; x < kPerLane; x += kVec) {
        if (h < hb) {
          unpack(load_pack<T, kVec>(q + h * D + Split::element(x, r)), &qf[h][x]);
        } else {
#pragma unroll
          for (int e = 0; e < kVec; ++e) qf[h][x + e] = 0.0f;
        }
      }
    for (int j0 = warp_first; j0 < cnt; j0 += kStep * kUnroll) {
      Pack<T, kVec> kp[kUnroll][kPacksPerLane];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = j0 + u * kStep + sub;
        const T* row = k + int64_t(j < cnt ? j : cnt - 1) * row_stride;  // past cnt: a valid row, never stored
#pragma unroll
        for (int pk = 0; pk < kPacksPerLane; ++pk) kp[u][pk] = load_pack<T, kVec>(row + (pk * kLanes + r) * kVec);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        float dot[kHeads] = {};
#pragma unroll
        for (int pk = 0; pk < kPacksPerLane; ++pk) add_dots(dot, qf, pk * kVec, kp[u][pk]);
        const float total = group_sum_transposed<kHeads, kLanes>(dot, lane);
        const int h = r / (kLanes / kHeads), j = j0 + u * kStep + sub;
        if (r % (kLanes / kHeads) == 0 && h < hb && j < cnt) scores[h * p.chunk + j] = total * p.scale;
      }
    }
  }
  __syncthreads();
  for (int h = warp; h < hb; h += kW)  // step 2
    softmax_in_place(scores + h * p.chunk, cnt, lane, p.partials.max_sum + ((i * p.heads + h0 + h) * p.chunks + c) * 2);
  __syncthreads();

  float acc[kHeads][kPerLane] = {};  // step 3
  for (int j0 = warp_first; j0 < cnt; j0 += kStep * kUnroll) {
    Pack<T, kVec> vp[kUnroll][kPacksPerLane];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kStep + sub;
      const T* row = v + int64_t(j < cnt ? j : cnt - 1) * row_stride;
#pragma unroll
      for (int pk = 0; pk < kPacksPerLane; ++pk) vp[u][pk] = load_pack<T, kVec>(row + (pk * kLanes + r) * kVec);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kStep + sub;
      if (j >= cnt) continue;
      float w[kHeads];
#pragma unroll
      for (int h = 0; h < kHeads; ++h) w[h] = h < hb ? scores[h * p.chunk + j] : 0.0f;
#pragma unroll
      for (int pk = 0; pk < kPacksPerLane; ++pk) add_weighted(acc, pk * kVec, w, vp[u][pk]);
    }
  }
  // The row groups of a warp hold the same elements: sum them, then the warps through shared memory.
#pragma unroll
  for (int offset = kLanes; offset < 32; offset *= 2)
#pragma unroll
    for (int h = 0; h < kHeads; ++h)
#pragma unroll
      for (int x = 0; x < kPerLane; ++x) acc[h][x] += __shfl_xor_sync(0xffffffffu, acc[h][x], offset);
  __syncthreads();  // every warp is done with the scores: their memory takes the warps' sums
  float* warp_sums = shared;
  if (lane < kLanes)
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      if (h >= hb) break;
#pragma unroll
      for (int x = 0; x < kPerLane; ++x) warp_sums[(warp * kHeads + h) * D + Split::element(x, r)] = acc[h][x];
    }
  __syncthreads();
  float* out = p.partials.acc + ((i * p.heads + h0) * p.chunks + c) * D;
  for (int x = threadIdx.x; x < hb * D; x += blockDim.x) {
    const int h = x / D, d = x % D;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kW; ++w) sum += warp_sums[(w * kHeads + h) * D + d];
    out[int64_t(h) * p.chunks * D + d] = sum;
  }
}

struct MlaParams {
  const void *q_latent, *q_pe, *latent, *pe;
  const int64_t *slot, *len;
  DecodePartials partials;
  int64_t heads, slots, cap;
  int chunk, chunks;
  float scale;
};

// The f32 MLA kernel (16-bit types take the tensor-core one below).
// Block (chunk, head group, row): warp w takes heads group * kMlaHeadsPerBlock + 2w and + 1 over
// the chunk's positions; the warps share no data, only the latent rows they all read (through L1).
// A warp's lanes split the latent dimension (and the first lanes the rotary one).
template <typename T, int R, int P>
__global__ void __launch_bounds__(kMlaWarps * 32) mla_chunk_kernel(MlaParams p) {
  allow_next_kernel();
  wait_for_previous_kernel();
  constexpr int kVec = 16 / int(sizeof(T));
  constexpr int kLatentPacks = R / kVec / 32;  // per lane
  constexpr int kPePacks = P / kVec;           // over the warp, one per lane
  constexpr int kLatent = kLatentPacks * kVec;
  constexpr int kHeads = kMlaHeadsPerWarp;
  constexpr int kUnroll = 4;  // positions per step: their loads in flight together
  static_assert(R % (32 * kVec) == 0 && P % kVec == 0 && kPePacks <= 32, "latent and rotary sizes");
  static_assert(kHeads * kUnroll <= 32, "one reduction for the step's scores");
  const int64_t i = blockIdx.z;
  const int c = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t h0 = int64_t(blockIdx.y) * kMlaHeadsPerBlock + warp * kHeads;
  if (h0 >= p.heads) return;  // this warp only: the kernel has no block barrier
  const int hw = int(p.heads - h0 < kHeads ? p.heads - h0 : kHeads);
  const int64_t s = p.slot[i];
  const int64_t length = valid_length(s, p.len[i], p.slots, p.cap);
  const int64_t start = int64_t(c) * p.chunk;
  if (start >= length) return;
  const int cnt = int(length - start < p.chunk ? length - start : p.chunk);

  extern __shared__ float shared[];
  float* scores = shared + warp * kHeads * p.chunk;  // [kHeads][chunk], this warp's
  const T* latent = static_cast<const T*>(p.latent) + (s * p.cap + start) * R;
  const T* pe = static_cast<const T*>(p.pe) + (s * p.cap + start) * P;
  const bool has_pe = lane < kPePacks;

  {  // step 1
    float ql[kHeads][kLatent], qp[kHeads][kVec];
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      const int64_t head = i * p.heads + (h < hw ? h0 + h : h0);  // a missing head repeats the first, never stored
      const T* q = static_cast<const T*>(p.q_latent) + head * R;
#pragma unroll
      for (int pk = 0; pk < kLatentPacks; ++pk) unpack(load_pack<T, kVec>(q + (pk * 32 + lane) * kVec), &ql[h][pk * kVec]);
      if (has_pe) {
        unpack(load_pack<T, kVec>(static_cast<const T*>(p.q_pe) + head * P + lane * kVec), qp[h]);
      } else {
#pragma unroll
        for (int e = 0; e < kVec; ++e) qp[h][e] = 0.0f;
      }
    }
    for (int j0 = 0; j0 < cnt; j0 += kUnroll) {
      Pack<T, kVec> lp[kUnroll][kLatentPacks], pp[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t j = j0 + u < cnt ? j0 + u : cnt - 1;  // past cnt: a valid row, never stored
#pragma unroll
        for (int pk = 0; pk < kLatentPacks; ++pk) lp[u][pk] = load_pack<T, kVec>(latent + j * R + (pk * 32 + lane) * kVec);
        if (has_pe) pp[u] = load_pack<T, kVec>(pe + j * P + lane * kVec);
      }
      float dot[kUnroll * kHeads] = {};  // dot[u * kHeads + h]
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int pk = 0; pk < kLatentPacks; ++pk) add_dots(dot + u * kHeads, ql, pk * kVec, lp[u][pk]);
        if (has_pe) add_dots(dot + u * kHeads, qp, 0, pp[u]);
      }
      const float total = group_sum_transposed<kUnroll * kHeads, 32>(dot, lane);
      constexpr int kLanesPerValue = 32 / (kUnroll * kHeads);
      const int value = lane / kLanesPerValue, u = value / kHeads, h = value % kHeads;
      if (lane % kLanesPerValue == 0 && h < hw && j0 + u < cnt) scores[h * p.chunk + j0 + u] = total * p.scale;
    }
  }
  __syncwarp();
  for (int h = 0; h < hw; ++h)  // step 2
    softmax_in_place(scores + h * p.chunk, cnt, lane, p.partials.max_sum + ((i * p.heads + h0 + h) * p.chunks + c) * 2);
  __syncwarp();

  float acc[kHeads][kLatent] = {};  // step 3
  for (int j0 = 0; j0 < cnt; j0 += kUnroll) {
    Pack<T, kVec> lp[kUnroll][kLatentPacks];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + u < cnt ? j0 + u : cnt - 1;
#pragma unroll
      for (int pk = 0; pk < kLatentPacks; ++pk) lp[u][pk] = load_pack<T, kVec>(latent + j * R + (pk * 32 + lane) * kVec);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (j0 + u >= cnt) break;
      float w[kHeads];
#pragma unroll
      for (int h = 0; h < kHeads; ++h) w[h] = h < hw ? scores[h * p.chunk + j0 + u] : 0.0f;
#pragma unroll
      for (int pk = 0; pk < kLatentPacks; ++pk) add_weighted(acc, pk * kVec, w, lp[u][pk]);
    }
  }
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    if (h >= hw) break;
    float* out = p.partials.acc + ((i * p.heads + h0 + h) * p.chunks + c) * R;
#pragma unroll
    for (int pk = 0; pk < kLatentPacks; ++pk)
#pragma unroll
      for (int e = 0; e < kVec; e += 4) {
        const Pack<float, 4> four{{acc[h][pk * kVec + e], acc[h][pk * kVec + e + 1], acc[h][pk * kVec + e + 2],
                                   acc[h][pk * kVec + e + 3]}};
        store_pack<float, 4>(out + (pk * 32 + lane) * kVec + e, four);
      }
  }
}

// The MLA kernel for 16-bit types, on tensor cores: at batch 64 the CUDA-core kernel above spent
// ~1.3 ms a layer on DeepSeek-V3 (128 heads x 576-wide scores per position), 40% of a decode step,
// while the latent rows it reads take ~20 us at the copy bandwidth; this one takes ~0.16 ms (H200).
// Block (chunk, group of kMlaTcHeadsPerBlock heads, row): the group's queries [64 heads, R + P] stay in shared memory, the chunk's
// latent and rotary rows pass through it kMlaTcKeys at a time (the next copy in flight during the
// current products), and each position is read once for all 64 heads. Warp w takes the 16 heads of
// m16 tile w / 2 and half w % 2 of the R value columns: it computes the tile's scores against the
// positions (both warps of a tile compute them, which costs less than sharing them through memory),
// keeps a running max and sum per head (online softmax over the chunk's steps), and adds p . latent
// into its 16 x 256 fp32 accumulators with p rounded to T, as flash attention does. The chunk's
// results go to the partials in the CUDA-core kernel's form: acc unnormalized against the max.
constexpr int kMlaTcWarps = 8;
constexpr int kMlaTcKeys = 32;
static_assert(kMlaTcWarps == 2 * (kMlaTcHeadsPerBlock / 16), "two warps per m16 tile of heads");

template <typename T, int R, int P>
__global__ void __launch_bounds__(kMlaTcWarps * 32, 1) mla_tc_chunk_kernel(MlaParams p) {
  allow_next_kernel();
  wait_for_previous_kernel();
  constexpr int D = R + P;
  // A shared-memory row of D elements plus 16 bytes: 1168 bytes for DeepSeek-V3, an odd number of
  // 16-byte units, so the 8 rows of an 8x8 tile load fall in distinct banks.
  constexpr int kStride = D + 8;
  constexpr int kHeads = int(kMlaTcHeadsPerBlock), kKeys = kMlaTcKeys, kPacks = D / 8;
  constexpr int kColumns = R / 2;  // value columns per warp
  static_assert(R % 16 == 0 && P % 8 == 0 && (kStride * 2 / 16) % 2 == 1, "sizes and the padded row");
  const int64_t i = blockIdx.z;
  const int c = blockIdx.x;
  const int64_t h_first = int64_t(blockIdx.y) * kHeads;
  const int hb = int(p.heads - h_first < kHeads ? p.heads - h_first : kHeads);
  const int64_t s = p.slot[i];
  const int64_t length = valid_length(s, p.len[i], p.slots, p.cap);
  const int64_t start = int64_t(c) * p.chunk;
  if (start >= length) return;  // the whole block: no barrier is reached
  const int cnt = int(length - start < p.chunk ? length - start : p.chunk);

  extern __shared__ __align__(16) unsigned char shared_bytes[];
  T* qs = reinterpret_cast<T*>(shared_bytes);  // [kHeads][kStride]
  T* ks = qs + kHeads * kStride;               // [2][kKeys][kStride], two steps' rows
  const T* q_latent = static_cast<const T*>(p.q_latent) + (i * p.heads + h_first) * R;
  const T* q_pe = static_cast<const T*>(p.q_pe) + (i * p.heads + h_first) * P;
  const T* latent = static_cast<const T*>(p.latent) + (s * p.cap + start) * R;
  const T* pe = static_cast<const T*>(p.pe) + (s * p.cap + start) * P;

  for (int x = threadIdx.x; x < kHeads * kPacks; x += blockDim.x) {
    const int h = x / kPacks, e = (x % kPacks) * 8;
    T* to = qs + h * kStride + e;
    if (h < hb) {
      cp_async_16(to, e < R ? q_latent + int64_t(h) * R + e : q_pe + int64_t(h) * P + (e - R));
    } else {
      *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);  // a missing head: zeros, never stored
    }
  }
  const auto copy_step = [&](int step) {
    T* rows = ks + (step % 2) * kKeys * kStride;
    for (int x = threadIdx.x; x < kKeys * kPacks; x += blockDim.x) {
      const int j = x / kPacks, e = (x % kPacks) * 8;
      const int64_t at = step * kKeys + j < cnt ? step * kKeys + j : cnt - 1;  // past cnt: a valid row, masked
      cp_async_16(rows + j * kStride + e, e < R ? latent + at * R + e : pe + at * P + (e - R));
    }
  };
  copy_step(0);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tile = warp / 2, half = warp % 2;
  const int g = lane / 4, q = lane % 4;
  float o[kColumns / 8][4] = {};  // C fragments of this warp's 16 heads x 256 value columns
  float running_max[2] = {-INFINITY, -INFINITY}, running_sum[2] = {0.0f, 0.0f};  // heads g, g + 8 (sum: this lane's)
  const int steps = (cnt + kKeys - 1) / kKeys;
  for (int step = 0; step < steps; ++step) {
    if (step + 1 < steps) copy_step(step + 1);
    cp_async_commit();
    cp_async_wait<1>();  // the queries and this step's rows are in
    __syncthreads();
    const T* rows = ks + (step % 2) * kKeys * kStride;

    float sc[kKeys / 8][4] = {};  // scores of heads g, g + 8 against positions 8n + 2q, + 1
#pragma unroll 4
    for (int k0 = 0; k0 < D; k0 += 16) {
      uint32_t a[4];
      ldmatrix_x4(a, qs + (tile * 16 + lane % 16) * kStride + k0 + (lane / 16) * 8);
#pragma unroll
      for (int n = 0; n < kKeys / 16; ++n) {
        uint32_t b[4];
        ldmatrix_x4(b, rows + (n * 16 + lane % 8 + (lane / 16) * 8) * kStride + k0 + ((lane / 8) % 2) * 8);
        mma_16x8x16<T>(sc[2 * n], a, b[0], b[1]);
        mma_16x8x16<T>(sc[2 * n + 1], a, b[2], b[3]);
      }
    }

    float step_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int position = step * kKeys + n * 8 + 2 * q + (e & 1);
        sc[n][e] = position < cnt ? sc[n][e] * p.scale : -INFINITY;
        step_max[e / 2] = fmaxf(step_max[e / 2], sc[n][e]);
      }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 1));
      step_max[r] = fmaxf(step_max[r], __shfl_xor_sync(0xffffffffu, step_max[r], 2));
      const float top = fmaxf(running_max[r], step_max[r]);  // finite: every step has a valid position
      rescale[r] = __expf(running_max[r] - top);               // 0 at the first step
      running_max[r] = top;
      running_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sc[n][e] = __expf(sc[n][e] - running_max[e / 2]);
        running_sum[e / 2] += sc[n][e];
      }
#pragma unroll
    for (int n = 0; n < kColumns / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= rescale[e / 2];

#pragma unroll
    for (int k = 0; k < kKeys / 16; ++k) {
      // The C fragments of positions 16k .. 16k + 15 are the A fragment of that K step.
      const uint32_t a[4] = {pack_pair<T>(sc[2 * k][0], sc[2 * k][1]), pack_pair<T>(sc[2 * k][2], sc[2 * k][3]),
                             pack_pair<T>(sc[2 * k + 1][0], sc[2 * k + 1][1]),
                             pack_pair<T>(sc[2 * k + 1][2], sc[2 * k + 1][3])};
#pragma unroll
      for (int n = 0; n < kColumns / 16; ++n) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, rows + (k * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + half * kColumns + n * 16 +
                                 (lane / 16) * 8);
        mma_16x8x16<T>(o[2 * n], a, b[0], b[1]);
        mma_16x8x16<T>(o[2 * n + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with these rows before the next copy overwrites them
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    running_sum[r] += __shfl_xor_sync(0xffffffffu, running_sum[r], 1);
    running_sum[r] += __shfl_xor_sync(0xffffffffu, running_sum[r], 2);
    const int h = tile * 16 + g + 8 * r;
    if (h >= hb) continue;
    const int64_t row_head = i * p.heads + h_first + h;
    float* out = p.partials.acc + (row_head * p.chunks + c) * R + half * kColumns + 2 * q;
#pragma unroll
    for (int n = 0; n < kColumns / 8; ++n) store_pack<float, 2>(out + n * 8, Pack<float, 2>{{o[n][2 * r], o[n][2 * r + 1]}});
    if (half == 0 && q == 0) {
      float* max_sum = p.partials.max_sum + (row_head * p.chunks + c) * 2;
      max_sum[0] = running_max[r], max_sum[1] = running_sum[r];
    }
  }
}

// One block per (row, head): the chunks that hold positions of the row, merged with weights
// w_c = exp(m_c - M) (M the largest chunk max): out = sum_c w_c acc_c / sum_c w_c l_c. Zeros
// without keys. At batch 1 the grid is only rows x heads blocks (32 for Qwen3) over dozens of
// chunks, so the block's time is its chain of waits on memory, not its bytes: warps that walked
// their chunks one after another took ~15 us a layer (H200, Qwen3, 36 chunks). Here nothing waits
// twice: the block's threads form `groups` groups of V / 4 threads (a float4 of a chunk's row
// each), group g takes chunks g, g + groups, ..., U of them per round with their loads in flight
// together, and the first round's loads go out before the max is known; the weights are computed
// once per chunk (a thread each) into shared memory. The groups' sums meet in shared memory in a
// fixed order, so a result does not change from run to run. With few chunks (3 a row at batch 64)
// each chunk has a group of its own and U is 1: registers held for loads that never come would
// only cost blocks per SM.
constexpr int kCombineMaxThreads = 512;
constexpr int kCombineMaxGroups = 8;
constexpr int kCombineUnroll = 8;  // U with more chunks than groups
constexpr int kCombineTile = 256;  // chunk weights in shared memory at once (at most)

struct CombineParams {
  DecodePartials partials;
  const int64_t *slot, *len;
  void* out;
  int64_t heads, slots, cap;
  int chunk, chunks;
};

// The max of v over the block, on every thread; `part` holds one value per warp.
__device__ inline float block_max(float v, float* part) {
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) part[warp] = v;
  __syncthreads();
  for (int w = 0; w < warps; ++w) v = fmaxf(v, part[w]);
  return v;
}

template <typename T, int V, int U>
__global__ void __launch_bounds__(kCombineMaxThreads) combine_chunks_kernel(CombineParams p) {
  allow_next_kernel();
  wait_for_previous_kernel();
  constexpr int kRow = V / 4;  // threads per chunk row
  static_assert(V % 4 == 0 && kRow <= kCombineMaxThreads && kCombineMaxGroups * U <= kCombineTile, "sizes");
  __shared__ float4 group_acc[kCombineMaxThreads];  // [groups][kRow]
  __shared__ float weight[kCombineTile];
  __shared__ float warp_max_part[kCombineMaxThreads / 32], warp_sum_part[kCombineMaxThreads / 32];
  const int groups = blockDim.x / kRow, g = threadIdx.x / kRow, r = threadIdx.x % kRow;
  const int round = groups * U;                        // chunks per round
  const int tile_size = kCombineTile / round * round;  // whole rounds
  const int64_t row_head = blockIdx.x, i = row_head / p.heads;
  const int64_t length = valid_length(p.slot[i], p.len[i], p.slots, p.cap);
  const int used = int((length + p.chunk - 1) / p.chunk);
  const float2* max_sum = reinterpret_cast<const float2*>(p.partials.max_sum) + row_head * p.chunks;
  const float4* acc = reinterpret_cast<const float4*>(p.partials.acc) + row_head * p.chunks * kRow + r;

  float4 a[U];
  const auto load_round = [&](int first) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = first + g + groups * u;
      a[u] = c < used ? __ldg(acc + int64_t(c) * kRow) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
  };
  load_round(0);  // in flight during the max and the weights, which they do not depend on

  float top = -INFINITY;
  for (int c = threadIdx.x; c < used; c += blockDim.x) top = fmaxf(top, __ldg(&max_sum[c].x));
  top = block_max(top, warp_max_part);

  float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  float total = 0.0f;
  for (int tile = 0; tile < used; tile += tile_size) {  // one tile unless a row has hundreds of chunks
    const int end = min(used, tile + tile_size);
    for (int c = tile + threadIdx.x; c < end; c += blockDim.x) {
      const float2 ms = __ldg(max_sum + c);
      const float w = expf(ms.x - top);
      weight[c - tile] = w;
      total += w * ms.y;
    }
    __syncthreads();
    for (int first = tile; first < end; first += round) {
      if (first > 0) load_round(first);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = first + g + groups * u;
        if (c >= end) break;
        const float w = weight[c - tile];
        o.x += w * a[u].x, o.y += w * a[u].y, o.z += w * a[u].z, o.w += w * a[u].w;
      }
    }
    __syncthreads();  // every group is done with this tile's weights
  }

  group_acc[threadIdx.x] = o;
  total = warp_sum(total);
  if (threadIdx.x % 32 == 0) warp_sum_part[threadIdx.x / 32] = total;
  __syncthreads();
  if (g != 0) return;
  float sum_l = 0.0f;
  for (int w = 0; w < int(blockDim.x / 32); ++w) sum_l += warp_sum_part[w];
  const float inverse = used > 0 ? 1.0f / sum_l : 0.0f;  // sum_l >= 1: each used chunk holds its max, exp(0)
  float4 v = group_acc[r];
  for (int h = 1; h < groups; ++h) {
    const float4 x = group_acc[h * kRow + r];
    v.x += x.x, v.y += x.y, v.z += x.z, v.w += x.w;
  }
  const Pack<T, 4> out{{from_f<T>(v.x * inverse), from_f<T>(v.y * inverse), from_f<T>(v.z * inverse),
                        from_f<T>(v.w * inverse)}};
  store_pack<T, 4>(static_cast<T*>(p.out) + row_head * V + 4 * r, out);
}

template <typename T, int V>
cudaError_t launch_combine_for(const CombineParams& params, int64_t rows, cudaStream_t stream) {
  constexpr int kRow = V / 4;
  constexpr int kWarpGroups = kRow < 32 ? 32 / kRow : 1;  // groups come in these steps: whole warps
  const auto whole_warps = [](int64_t groups) { return int((groups + kWarpGroups - 1) / kWarpGroups * kWarpGroups); };
  const int64_t chunks = std::max<int64_t>(params.chunks, 1);
  if (chunks <= kCombineMaxGroups && whole_warps(chunks) * kRow <= kCombineMaxThreads) {
    return launch_chained(combine_chunks_kernel<T, V, 1>, dim3(unsigned(rows)), dim3(unsigned(whole_warps(chunks) * kRow)),
                          0, stream, params);
  }
  const int groups = whole_warps(std::min(kCombineMaxGroups, kCombineMaxThreads / kRow));
  return launch_chained(combine_chunks_kernel<T, V, kCombineUnroll>, dim3(unsigned(rows)), dim3(unsigned(groups * kRow)),
                        0, stream, params);
}

template <typename T>
cudaError_t launch_combine(DecodePartials partials, const int64_t* slot, const int64_t* len, void* out, int64_t n,
                           int64_t heads, int64_t slots, int64_t cap, int64_t chunk, int64_t chunks, int64_t value_dim,
                           cudaStream_t stream) {
  if (n * heads > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  const CombineParams params{partials, slot, len, out, heads, slots, cap, int(chunk), int(chunks)};
  switch (value_dim) {
    case 64: return launch_combine_for<T, 64>(params, n * heads, stream);
    case 128: return launch_combine_for<T, 128>(params, n * heads, stream);
    case 256: return launch_combine_for<T, 256>(params, n * heads, stream);
    case 512: return launch_combine_for<T, 512>(params, n * heads, stream);
    default: return cudaErrorInvalidValue;
  }
}

// Shapes every launcher checks: a grid within CUDA's limits and a chunk within the shared memory.
bool grid_fits(int64_t n, int64_t blocks_y, int64_t chunk, int64_t chunks, int64_t cap) {
  return n <= 65535 && blocks_y <= 65535 && chunk > 0 && chunk <= kDecodeMaxChunk && chunks * chunk >= cap &&
         chunks < (int64_t(1) << 31);
}

template <typename T, int D>
cudaError_t launch_gqa(const GqaParams& params, int64_t n, const int64_t* slot, const int64_t* len, void* out,
                       cudaStream_t stream) {
  const int64_t blocks_y = params.kv_heads * params.head_tiles;
  const dim3 grid(unsigned(params.chunks), unsigned(blocks_y), unsigned(n));
  const auto launch = [&](auto warps) {
    constexpr int kW = decltype(warps)::value;
    const size_t shared =
        sizeof(float) * size_t(std::max<int64_t>(kGqaHeadsPerBlock * params.chunk, kW * kGqaHeadsPerBlock * D));
    return launch_chained(gqa_chunk_kernel<T, D, kW>, grid, dim3(kW * 32), shared, stream, params);
  };
  // Chunks of 256+ positions (large batches) on twice the warps, more of each block's loads in
  // flight: H200, Qwen3 batch 64 over 1024 positions, the kernel alone 71.9 us against 79.8
  // (results/decode/gqa_b64_variants_e236227.json), the 4-layer step 1.886-1.902 ms against
  // 1.934-1.963 (results/decode/bench_decode_qwen3-30b-a3b_4L_1gpu_bf16_fused_gqa-*_763349c.json).
  // Shared memory holds 8 warps' sums for head sizes up to 128.
  cudaError_t e;
  if constexpr (D <= 128) {
    e = params.chunk >= 256 ? launch(std::integral_constant<int, 2 * kGqaWarps>{})
                            : launch(std::integral_constant<int, kGqaWarps>{});
  } else {
    e = launch(std::integral_constant<int, kGqaWarps>{});
  }
  if (e != cudaSuccess) return e;
  return launch_combine<T>(params.partials, slot, len, out, n, params.heads, params.slots, params.cap, params.chunk,
                           params.chunks, D, stream);
}

}  // namespace

bool gqa_decode_supports(int64_t head_dim) { return head_dim == 64 || head_dim == 128 || head_dim == 256; }

cudaError_t gqa_decode_attention(Dtype dtype, const void* q, const void* k, const void* v, const int64_t* slot,
                                 const int64_t* len, DecodePartials partials, void* out, int64_t n, int64_t heads,
                                 int64_t kv_heads, int64_t head_dim, int64_t slots, int64_t cap, int64_t chunk,
                                 int64_t chunks, float scale, cudaStream_t stream) {
  if (n == 0 || heads == 0) return cudaSuccess;
  if (kv_heads <= 0 || heads % kv_heads != 0 || !gqa_decode_supports(head_dim)) return cudaErrorInvalidValue;
  const int64_t head_tiles = (heads / kv_heads + kGqaHeadsPerBlock - 1) / kGqaHeadsPerBlock;
  if (!grid_fits(n, kv_heads * head_tiles, chunk, chunks, cap)) return cudaErrorInvalidValue;
  const GqaParams params{q,   k,   v,          slot,        len,             partials, heads, kv_heads,
                         slots, cap, int(chunk), int(chunks), int(head_tiles), scale};
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    switch (head_dim) {
      case 64: return launch_gqa<T, 64>(params, n, slot, len, out, stream);
      case 128: return launch_gqa<T, 128>(params, n, slot, len, out, stream);
      default: return launch_gqa<T, 256>(params, n, slot, len, out, stream);
    }
  });
}

bool mla_decode_supports(int64_t rank, int64_t rope_dim) { return rank == 512 && rope_dim == 64; }

int64_t mla_heads_per_block(Dtype dtype) { return dtype == Dtype::F32 ? kMlaHeadsPerBlock : kMlaTcHeadsPerBlock; }

cudaError_t mla_decode_attention(Dtype dtype, const void* q_latent, const void* q_pe, const void* latent,
                                 const void* pe, const int64_t* slot, const int64_t* len, DecodePartials partials,
                                 void* out, int64_t n, int64_t heads, int64_t rank, int64_t rope_dim, int64_t slots,
                                 int64_t cap, int64_t chunk, int64_t chunks, float scale, cudaStream_t stream) {
  if (n == 0 || heads == 0) return cudaSuccess;
  if (!mla_decode_supports(rank, rope_dim)) return cudaErrorInvalidValue;
  const int64_t per_block = mla_heads_per_block(dtype);
  const int64_t groups = (heads + per_block - 1) / per_block;
  if (!grid_fits(n, groups, chunk, chunks, cap)) return cudaErrorInvalidValue;
  const MlaParams params{q_latent, q_pe, latent, pe, slot, len, partials, heads, slots, cap, int(chunk), int(chunks),
                         scale};
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(groups), static_cast<unsigned>(n));
  return with_element_type(dtype, [&](auto e) {
    using T = typename decltype(e)::type;
    if constexpr (sizeof(T) == 2) {
      constexpr int kStride = 512 + 64 + 8;
      const size_t shared = sizeof(T) * size_t(kMlaTcHeadsPerBlock + 2 * kMlaTcKeys) * kStride;
      // Over the 48 KB default: allowed per kernel, and not a stream operation (legal inside a capture).
      const cudaError_t attr = cudaFuncSetAttribute(mla_tc_chunk_kernel<T, 512, 64>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
      if (attr != cudaSuccess) return attr;
      if (const cudaError_t err =
              launch_chained(mla_tc_chunk_kernel<T, 512, 64>, grid, dim3(kMlaTcWarps * 32), shared, stream, params);
          err != cudaSuccess)
        return err;
    } else {
      const size_t shared = sizeof(float) * size_t(kMlaHeadsPerBlock * chunk);
      if (const cudaError_t err =
              launch_chained(mla_chunk_kernel<T, 512, 64>, grid, dim3(kMlaWarps * 32), shared, stream, params);
          err != cudaSuccess)
        return err;
    }
    return launch_combine<T>(partials, slot, len, out, n, heads, slots, cap, chunk, chunks, rank, stream);
  });
}

}  // namespace lb::cuda
