#include "kernels/decode_attention.h"

#include <limits>

namespace lb {

namespace {

// Scores [n, H, cap] in fp32 -> probabilities with positions at or past len masked.
torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& len) {
  const int64_t cap = scores.size(2);
  const torch::Tensor past = torch::arange(cap, len.options()).view({1, 1, cap}) >= len.view({-1, 1, 1});
  torch::Tensor probs = torch::softmax(scores.masked_fill(past, -std::numeric_limits<float>::infinity()), -1);
  return probs.masked_fill(past, 0.0).nan_to_num(0.0);  // a row with len 0 is all masked: zeros, not NaN
}

}  // namespace

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                               const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused) {
  (void)fused;
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kv_heads = k_cache.size(2), cap = k_cache.size(1);
  const int64_t group = heads / kv_heads;
  const torch::Tensor qs = q.to(torch::kFloat32).view({n, kv_heads, group, d});
  const torch::Tensor ks = k_cache.index_select(0, slot).to(torch::kFloat32);  // [n, cap, Hkv, D]
  const torch::Tensor vs = v_cache.index_select(0, slot).to(torch::kFloat32);
  // [n, Hkv, group, D] x [n, Hkv, D, cap] -> [n, Hkv, group, cap]
  const torch::Tensor scores = torch::matmul(qs, ks.permute({0, 2, 3, 1})) * scale;
  const torch::Tensor probs = masked_softmax(scores.view({n, heads, cap}), len).view({n, kv_heads, group, cap});
  const torch::Tensor out = torch::matmul(probs, vs.permute({0, 2, 1, 3}));  // [n, Hkv, group, Dv]
  return out.reshape({n, heads, v_cache.size(3)}).to(q.scalar_type());
}

torch::Tensor decode_attention_mla(const torch::Tensor& q_latent, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent_cache, const torch::Tensor& pe_cache,
                                   const torch::Tensor& slot, const torch::Tensor& len, double scale, bool fused) {
  (void)fused;
  const torch::Tensor latent = latent_cache.index_select(0, slot).to(torch::kFloat32);  // [n, cap, R]
  const torch::Tensor pe = pe_cache.index_select(0, slot).to(torch::kFloat32);          // [n, cap, P]
  const torch::Tensor scores = (torch::matmul(q_latent.to(torch::kFloat32), latent.transpose(1, 2)) +
                                torch::matmul(q_pe.to(torch::kFloat32), pe.transpose(1, 2))) * scale;  // [n, H, cap]
  return torch::matmul(masked_softmax(scores, len), latent).to(q_latent.scalar_type());
}

}  // namespace lb
