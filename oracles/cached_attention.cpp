#include "oracles/cached_attention.h"

#include "kernels/decode_attention.h"
#include "kernels/matmul.h"
#include "oracles/deepseek_v3_layer.h"

namespace lb {

std::vector<std::vector<int64_t>> cache_part_shapes(const ModelConfig& c, const LayerWeights& w) {
  if (c.family == ModelFamily::DeepseekV3) return {{c.kv_lora_rank}, {c.qk_rope_head_dim}};
  const int64_t kv_heads = w["self_attn.k_proj.weight"].size(0) / c.head_dim;
  return {{kv_heads, c.head_dim}, {kv_heads, c.head_dim}};
}

torch::Tensor gqa_attention(const LayerWeights& w, const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v, const TokenPlacement& q_tokens, const TokenPlacement& k_tokens,
                            double scale, const CacheStep* cache, bool cache_written) {
  if (cache && !cache_written) cache->cache->write(w.layer, {k, v}, cache->write_row);
  if (!cache || !cache->decode()) return causal_attention(q, k, v, q_tokens, k_tokens, scale, w.fused_kernels);
  const auto& kv = cache->cache->layer(w.layer);
  return decode_attention(q, kv[0], kv[1], cache->read_slot, cache->read_len, scale, w.fused_kernels);
}

namespace {

// kv_b_proj as [H, nope + v, R]: rows 0..nope of a head make its keys from the latent, the rest its values.
torch::Tensor kv_b_by_head(const ModelConfig& c, const LayerWeights& w) {
  const torch::Tensor kv_b = w["self_attn.kv_b_proj.weight"];
  const int64_t per_head = c.qk_nope_head_dim + c.v_head_dim;
  return kv_b.view({kv_b.size(0) / per_head, per_head, c.kv_lora_rank});
}

// Attention in the latent space, as serving engines decode MLA: q_nope . (W_UK latent) is
// (W_UK^T q_nope) . latent, so each query is moved into the latent space once and the cache is read
// as it is; the weighted latent rows then go through W_UV. No per-step expansion of the cache.
torch::Tensor mla_decode_absorbed(const ModelConfig& c, const LayerWeights& w, const torch::Tensor& q,
                                  const CacheStep& cache) {
  const torch::Tensor kv_b = kv_b_by_head(c, w);
  const torch::Tensor w_uk = kv_b.narrow(1, 0, c.qk_nope_head_dim);             // [H, nope, R]
  const torch::Tensor w_uv = kv_b.narrow(1, c.qk_nope_head_dim, c.v_head_dim);  // [H, v, R]
  const torch::Tensor q_nope = q.narrow(2, 0, c.qk_nope_head_dim).transpose(0, 1);  // [H, n, nope]
  const torch::Tensor q_latent = matmul_acc32(q_nope, w_uk).transpose(0, 1);          // [n, H, R]
  const torch::Tensor q_pe = q.narrow(2, c.qk_nope_head_dim, c.qk_rope_head_dim);
  const auto& parts = cache.cache->layer(w.layer);
  const torch::Tensor o_latent = decode_attention_mla(q_latent, q_pe.contiguous(), parts[0], parts[1], cache.read_slot,
                                                      cache.read_len, c.attention_scale(), w.fused_kernels);
  return matmul_acc32(o_latent.transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1);  // [n, H, v]
}

// The oracle form: every cached position of each query's slot expanded into keys and values.
torch::Tensor mla_decode_expanded(const ModelConfig& c, const LayerWeights& w, const torch::Tensor& q,
                                  const CacheStep& cache) {
  const auto& parts = cache.cache->layer(w.layer);
  const int64_t n = q.size(0), cap = parts[0].size(1);
  const torch::Tensor latent = parts[0].index_select(0, cache.read_slot).flatten(0, 1);  // [n * cap, R]
  const torch::Tensor k_pe = parts[1].index_select(0, cache.read_slot).flatten(0, 1);
  auto [k, v] = mla_expand_kv(c, w, latent, k_pe);
  // Each query row gets a pseudo-slot of its own expanded keys; values are padded to the key width
  // (decode_attention takes one head size) and the padding's output columns dropped.
  const int64_t heads = k.size(1), dk = k.size(2), dv = v.size(2);
  const torch::Tensor v_wide = torch::constant_pad_nd(v, {0, dk - dv});
  const torch::Tensor own = torch::arange(n, cache.read_slot.options());
  return decode_attention(q, k.reshape({n, cap, heads, dk}), v_wide.reshape({n, cap, heads, dk}), own, cache.read_len,
                          c.attention_scale(), /*fused=*/false)
      .narrow(2, 0, dv);
}

}  // namespace

torch::Tensor mla_attention(const ModelConfig& c, const LayerWeights& w, const torch::Tensor& q,
                            const torch::Tensor& latent, const torch::Tensor& k_pe, const TokenPlacement& q_tokens,
                            const TokenPlacement& k_tokens, const CacheStep* cache, bool absorbed) {
  if (cache) cache->cache->write(w.layer, {latent, k_pe}, cache->write_row);
  if (!cache || !cache->decode()) {
    auto [k, v] = mla_expand_kv(c, w, latent, k_pe);
    return causal_attention(q, k, v, q_tokens, k_tokens, c.attention_scale(), w.fused_kernels);
  }
  return absorbed ? mla_decode_absorbed(c, w, q, *cache) : mla_decode_expanded(c, w, q, *cache);
}

}  // namespace lb
