#include "kernels/decode_attention.h"

#include "harness/runtime/errors.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#ifdef LB_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

namespace {

// Fewer positions per block and its fixed costs (the query load, three barriers, the partials it
// writes) outweigh the keys it reads; the most is the kernels' shared-memory bound.
constexpr int64_t kMinChunk = 16, kMaxChunk = 512;
// Blocks per SM a split aims for: enough to overlap one block's loads with another's arithmetic.
// (8 for GQA was tried on an H200: batch 64 no faster, batch 1 slower, its merge over twice the chunks.)
constexpr int64_t kBlocksPerSm = 2;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string sizes_text(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

void require(bool ok, const std::string& what) {
  if (!ok) throw InputError("decode attention: " + what);
}

// slot and len: int64 [n] on q's device.
void check_rows(const torch::Tensor& q, const torch::Tensor& slot, const torch::Tensor& len) {
  for (const auto& [name, t] : {std::pair<const char*, const torch::Tensor*>{"slot", &slot}, {"len", &len}}) {
    require(t->defined() && t->dim() == 1 && t->size(0) == q.size(0),
            std::string(name) + " must be [" + std::to_string(q.size(0)) + "], one per query row; got " +
                (t->defined() ? sizes_text(*t) : "none"));
    require(t->scalar_type() == torch::kInt64, std::string(name) + " must be int64");
    require(t->device() == q.device(), std::string(name) + " must be on the queries' device");
  }
}

// Every tensor of `ts` has q's dtype (a floating one) and device.
void check_like(const torch::Tensor& q, std::initializer_list<std::pair<const char*, const torch::Tensor*>> ts) {
  require(torch::isFloatingType(q.scalar_type()), "queries must be floating point");
  for (const auto& [name, t] : ts) {
    require(t->scalar_type() == q.scalar_type(), std::string(name) + " must have the queries' dtype");
    require(t->device() == q.device(), std::string(name) + " must be on the queries' device");
  }
}

void check_gqa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& slot,
               const torch::Tensor& len) {
  require(q.dim() == 3, "q must be [n, heads, head_dim]; got " + sizes_text(q));
  require(k.dim() == 4, "k_cache must be [slots, cap, kv_heads, head_dim]; got " + sizes_text(k));
  require(v.sizes() == k.sizes(), "v_cache " + sizes_text(v) + " must match k_cache " + sizes_text(k));
  require(k.size(3) == q.size(2),
          "k_cache head_dim " + std::to_string(k.size(3)) + " differs from q's " + std::to_string(q.size(2)));
  require(k.size(2) > 0 && q.size(1) % k.size(2) == 0, "query heads " + std::to_string(q.size(1)) +
                                                           " not a multiple of kv heads " + std::to_string(k.size(2)));
  check_like(q, {{"k_cache", &k}, {"v_cache", &v}});
  check_rows(q, slot, len);
}

void check_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe, const torch::Tensor& latent,
               const torch::Tensor& pe, const torch::Tensor& slot, const torch::Tensor& len) {
  require(q_latent.dim() == 3, "q_latent must be [n, heads, rank]; got " + sizes_text(q_latent));
  require(q_pe.dim() == 3 && q_pe.size(0) == q_latent.size(0) && q_pe.size(1) == q_latent.size(1),
          "q_pe must be [n, heads, rope_dim] with q_latent's n and heads; got " + sizes_text(q_pe) + " and " +
              sizes_text(q_latent));
  require(latent.dim() == 3 && latent.size(2) == q_latent.size(2),
          "latent_cache must be [slots, cap, rank] with q_latent's rank; got " + sizes_text(latent));
  require(pe.dim() == 3 && pe.size(0) == latent.size(0) && pe.size(1) == latent.size(1) && pe.size(2) == q_pe.size(2),
          "pe_cache must be [slots, cap, rope_dim] like latent_cache and q_pe; got " + sizes_text(pe));
  check_like(q_latent, {{"q_pe", &q_pe}, {"latent_cache", &latent}, {"pe_cache", &pe}});
  check_rows(q_latent, slot, len);
}

// Positions at or past a row's length, as a mask broadcasting against [n, ..., cap] (`dims` in all).
torch::Tensor past_length(const torch::Tensor& len, int64_t cap, int64_t dims) {
  std::vector<int64_t> position(size_t(dims), 1), row(size_t(dims), 1);
  position.back() = cap;
  row.front() = len.size(0);
  return torch::arange(cap, len.options()).view(position) >= len.view(row);
}

// Softmax over the last dimension where `masked` is false, zeros where it is true: a row with every
// position masked (length 0) gets zeros, not the NaNs of a softmax over nothing but -inf.
torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& masked) {
  const torch::Tensor probs = torch::softmax(scores.masked_fill(masked, -std::numeric_limits<float>::infinity()), -1);
  return probs.masked_fill(masked, 0.0);
}

torch::Tensor plain_gqa(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                        const torch::Tensor& slot, const torch::Tensor& len, double scale) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), cap = k_cache.size(1), kv_heads = k_cache.size(2);
  const int64_t group = heads / kv_heads;
  // [n, kv_heads, group, d] against [n, kv_heads, d, cap]: each KV head read once for its query heads.
  const torch::Tensor qs = q.to(torch::kFloat32).reshape({n, kv_heads, group, d});
  const torch::Tensor k = k_cache.index_select(0, slot).to(torch::kFloat32).permute({0, 2, 3, 1});
  const torch::Tensor v = v_cache.index_select(0, slot).to(torch::kFloat32).permute({0, 2, 1, 3});
  const torch::Tensor scores = torch::matmul(qs, k) * scale;  // [n, kv_heads, group, cap]
  const torch::Tensor probs = masked_softmax(scores, past_length(len, cap, 4));
  return torch::matmul(probs, v).reshape({n, heads, d}).to(q.scalar_type());
}

torch::Tensor plain_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe, const torch::Tensor& latent_cache,
                        const torch::Tensor& pe_cache, const torch::Tensor& slot, const torch::Tensor& len,
                        double scale) {
  const int64_t cap = latent_cache.size(1);
  const torch::Tensor latent = latent_cache.index_select(0, slot).to(torch::kFloat32);  // [n, cap, R]
  const torch::Tensor pe = pe_cache.index_select(0, slot).to(torch::kFloat32);          // [n, cap, P]
  const torch::Tensor scores = (torch::matmul(q_latent.to(torch::kFloat32), latent.transpose(1, 2)) +
                                torch::matmul(q_pe.to(torch::kFloat32), pe.transpose(1, 2))) *
                               scale;  // [n, H, cap]
  const torch::Tensor probs = masked_softmax(scores, past_length(len, cap, 3));
  return torch::matmul(probs, latent).to(q_latent.scalar_type());
}

#ifdef LB_HAVE_CUDA
static_assert(kMaxChunk <= cuda::kDecodeMaxChunk, "a chunk the kernels' shared memory holds");

// A query tensor the kernels can read after .contiguous() (a copy is freshly allocated, so aligned).
bool query_fits(const torch::Tensor& q) { return !q.is_contiguous() || aligned16(q); }

// A cache the kernels can read in place: copying it every step would cost more than the attention.
bool cache_fits(const torch::Tensor& c) { return c.is_contiguous() && aligned16(c); }

int64_t sm_count(const torch::Tensor& t) { return at::cuda::getDeviceProperties(t.device().index())->multiProcessorCount; }

struct Workspace {
  torch::Tensor acc, max_sum;
  cuda::DecodePartials partials() { return {acc.data_ptr<float>(), max_sum.data_ptr<float>()}; }
};

// The chunks' partial results of n rows of `heads` heads, from the caching allocator (inside a
// graph capture, from the graph's pool).
Workspace workspace(const torch::Tensor& q, int64_t heads, int64_t chunks, int64_t value_dim) {
  const auto f32 = q.options().dtype(torch::kFloat32);
  return {torch::empty({q.size(0) * heads, chunks, value_dim}, f32), torch::empty({q.size(0) * heads, chunks, 2}, f32)};
}

torch::Tensor gqa_kernel(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                         const torch::Tensor& slot, const torch::Tensor& len, double scale) {
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kv_heads = k_cache.size(2);
  const int64_t tiles = ceil_div(heads / kv_heads, cuda::kGqaHeadsPerBlock);
  const DecodeSplit split = decode_split(n * kv_heads * tiles, k_cache.size(1), sm_count(q));
  const torch::Tensor qc = q.contiguous(), sc = slot.contiguous(), lc = len.contiguous();
  Workspace w = workspace(q, heads, split.chunks, d);
  torch::Tensor out = torch::empty({n, heads, d}, q.options());
  check_launch(cuda::gqa_decode_attention(*kernel_dtype(q), qc.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
                                          sc.data_ptr<int64_t>(), lc.data_ptr<int64_t>(), w.partials(), out.data_ptr(),
                                          n, heads, kv_heads, d, k_cache.size(0), k_cache.size(1), split.chunk,
                                          split.chunks, float(scale), stream_of(q)),
               "GQA decode attention kernel");
  return out;
}

torch::Tensor mla_kernel(const torch::Tensor& q_latent, const torch::Tensor& q_pe, const torch::Tensor& latent_cache,
                         const torch::Tensor& pe_cache, const torch::Tensor& slot, const torch::Tensor& len,
                         double scale) {
  const c10::cuda::CUDAGuard guard(q_latent.device());
  const int64_t n = q_latent.size(0), heads = q_latent.size(1), rank = q_latent.size(2), rope_dim = q_pe.size(2);
  const int64_t groups = ceil_div(heads, cuda::mla_heads_per_block(*kernel_dtype(q_latent)));
  const DecodeSplit split = decode_split(n * groups, latent_cache.size(1), sm_count(q_latent));
  const torch::Tensor ql = q_latent.contiguous(), qp = q_pe.contiguous(), sc = slot.contiguous(), lc = len.contiguous();
  Workspace w = workspace(q_latent, heads, split.chunks, rank);
  torch::Tensor out = torch::empty({n, heads, rank}, q_latent.options());
  check_launch(cuda::mla_decode_attention(*kernel_dtype(q_latent), ql.data_ptr(), qp.data_ptr(), latent_cache.data_ptr(),
                                          pe_cache.data_ptr(), sc.data_ptr<int64_t>(), lc.data_ptr<int64_t>(),
                                          w.partials(), out.data_ptr(), n, heads, rank, rope_dim, latent_cache.size(0),
                                          latent_cache.size(1), split.chunk, split.chunks, float(scale),
                                          stream_of(q_latent)),
               "MLA decode attention kernel");
  return out;
}
#endif

}  // namespace

DecodeSplit decode_split(int64_t blocks_per_chunk, int64_t cap, int64_t sms) {
  if (cap <= 0) return {kMinChunk, 1};
  const int64_t wanted = ceil_div(kBlocksPerSm * std::max<int64_t>(sms, 1), std::max<int64_t>(blocks_per_chunk, 1));
  const int64_t chunks = std::clamp(wanted, ceil_div(cap, kMaxChunk), ceil_div(cap, kMinChunk));
  const int64_t chunk = ceil_div(ceil_div(cap, chunks), kMinChunk) * kMinChunk;
  return {chunk, ceil_div(cap, chunk)};
}

bool decode_attention_uses_kernel(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache) {
#ifdef LB_HAVE_CUDA
  const int64_t kv_heads = k_cache.dim() == 4 ? k_cache.size(2) : 0;
  return kernel_dtype(q) && q.dim() == 3 && kv_heads > 0 && q.size(1) % kv_heads == 0 && q.size(0) <= 65535 &&
         kv_heads * ceil_div(q.size(1) / kv_heads, cuda::kGqaHeadsPerBlock) <= 65535 &&
         cuda::gqa_decode_supports(q.size(2)) && k_cache.size(3) == q.size(2) && v_cache.sizes() == k_cache.sizes() &&
         k_cache.device() == q.device() && v_cache.device() == q.device() &&
         k_cache.scalar_type() == q.scalar_type() && v_cache.scalar_type() == q.scalar_type() && query_fits(q) &&
         cache_fits(k_cache) && cache_fits(v_cache);
#else
  (void)q, (void)k_cache, (void)v_cache;
  return false;
#endif
}

bool decode_attention_mla_uses_kernel(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                      const torch::Tensor& latent_cache, const torch::Tensor& pe_cache) {
#ifdef LB_HAVE_CUDA
  const auto same = [&](const torch::Tensor& t) {
    return t.device() == q_latent.device() && t.scalar_type() == q_latent.scalar_type();
  };
  return kernel_dtype(q_latent) && q_latent.dim() == 3 && q_pe.dim() == 3 && latent_cache.dim() == 3 &&
         pe_cache.dim() == 3 && q_latent.size(0) <= 65535 &&
         cuda::mla_decode_supports(q_latent.size(2), q_pe.size(2)) && latent_cache.size(2) == q_latent.size(2) &&
         pe_cache.size(2) == q_pe.size(2) && same(q_pe) && same(latent_cache) && same(pe_cache) &&
         query_fits(q_latent) && query_fits(q_pe) && cache_fits(latent_cache) && cache_fits(pe_cache);
#else
  (void)q_latent, (void)q_pe, (void)latent_cache, (void)pe_cache;
  return false;
#endif
}

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                               const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused) {
  check_gqa(q, k_cache, v_cache, slot, len);
#ifdef LB_HAVE_CUDA
  if (fused && decode_attention_uses_kernel(q, k_cache, v_cache)) return gqa_kernel(q, k_cache, v_cache, slot, len, scale);
#endif
  return plain_gqa(q, k_cache, v_cache, slot, len, scale);
}

torch::Tensor decode_attention_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent_cache, const torch::Tensor& pe_cache,
                                   const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused) {
  check_mla(q_latent, q_pe, latent_cache, pe_cache, slot, len);
#ifdef LB_HAVE_CUDA
  if (fused && decode_attention_mla_uses_kernel(q_latent, q_pe, latent_cache, pe_cache))
    return mla_kernel(q_latent, q_pe, latent_cache, pe_cache, slot, len, scale);
#endif
  return plain_mla(q_latent, q_pe, latent_cache, pe_cache, slot, len, scale);
}

}  // namespace lb
