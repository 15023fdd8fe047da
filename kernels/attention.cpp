#include "kernels/attention.h"

#include <limits>
#include <optional>

namespace lb {

TokenPlacement packed_placement(const std::vector<int64_t>& seq_lens, torch::Device device,
                                const std::vector<int64_t>& past) {
  std::vector<int64_t> seq, pos;
  for (size_t s = 0; s < seq_lens.size(); ++s)
    for (int64_t p = 0; p < seq_lens[s]; ++p) {
      seq.push_back(int64_t(s));
      pos.push_back((past.empty() ? 0 : past.at(s)) + p);
    }
  auto make = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kInt64).to(device);
  };
  return {make(seq), make(pos)};
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const TokenPlacement& q_tokens, const TokenPlacement& k_tokens, double scale,
                               bool fused) {
#if TORCH_VERSION_MAJOR >= 2
  // The same placement on both sides: each sequence's tokens in position order, so the mask is
  // the plain causal one.
  const bool self_causal = &q_tokens == &k_tokens;
#else
  (void)fused;  // no scaled_dot_product_attention in LibTorch 1.x: the plain path
#endif
  const int64_t heads = q.size(1), kv_heads = k.size(1);
  TORCH_CHECK(heads % kv_heads == 0, "query heads ", heads, " not a multiple of kv heads ", kv_heads);
  const int64_t group = heads / kv_heads;
  torch::Tensor out = torch::zeros({q.size(0), heads, v.size(2)}, q.options());
  torch::Tensor sequences = std::get<0>(torch::_unique(q_tokens.seq.cpu()));
  auto seq_ids = sequences.accessor<int64_t, 1>();
  for (int64_t i = 0; i < sequences.size(0); ++i) {
    const int64_t s = seq_ids[i];
    torch::Tensor qi = (q_tokens.seq == s).nonzero().squeeze(1);
    torch::Tensor ki = (k_tokens.seq == s).nonzero().squeeze(1);
    torch::Tensor qs = q.index_select(0, qi).transpose(0, 1);  // [Hq, nq, D]
    torch::Tensor ks = k.index_select(0, ki).transpose(0, 1);  // [Hkv, nk, D]
    torch::Tensor vs = v.index_select(0, ki).transpose(0, 1);
    if (group > 1) {
      ks = ks.repeat_interleave(group, 0);
      vs = vs.repeat_interleave(group, 0);
    }
#if TORCH_VERSION_MAJOR >= 2
    if (fused) {
      std::optional<torch::Tensor> mask;
      if (!self_causal)  // true where the query may see the key
        mask = k_tokens.pos.index_select(0, ki).unsqueeze(0) <= q_tokens.pos.index_select(0, qi).unsqueeze(1);
      // A batch dimension of 1: the flash and memory-efficient kernels take [B, H, S, D] only.
      torch::Tensor o =
          torch::scaled_dot_product_attention(qs.unsqueeze(0), ks.unsqueeze(0), vs.unsqueeze(0), mask, 0.0, self_causal,
                                              scale)
              .squeeze(0);
      out.index_copy_(0, qi, o.transpose(0, 1));
      continue;
    }
#endif
    torch::Tensor scores = torch::matmul(qs, ks.transpose(1, 2)) * scale;  // [Hq, nq, nk]
    torch::Tensor future = k_tokens.pos.index_select(0, ki).unsqueeze(0) > q_tokens.pos.index_select(0, qi).unsqueeze(1);
    scores = scores.masked_fill(future.unsqueeze(0), -std::numeric_limits<float>::infinity());
    torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
    out.index_copy_(0, qi, torch::matmul(probs, vs).transpose(0, 1));
  }
  return out;
}

}  // namespace lb
