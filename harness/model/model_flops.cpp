#include "harness/model/model_flops.h"

namespace lb {

double prefill_flops(const ModelConfig& c, const std::vector<int64_t>& seq_lens) {
  double tokens = 0, pairs = 0;  // pairs: (query, visible key) over all sequences
  for (int64_t len : seq_lens) {
    tokens += double(len);
    pairs += double(len) * double(len + 1) / 2;
  }
  const double H = double(c.hidden);
  double attention = 0;  // per layer
  if (c.family == ModelFamily::DeepseekV3) {
    const double heads = double(c.num_heads), qk = double(c.qk_head_dim()), v = double(c.v_head_dim);
    const double q = c.q_lora_rank > 0 ? H * c.q_lora_rank + double(c.q_lora_rank) * heads * qk : H * heads * qk;
    const double kv_a = H * double(c.kv_lora_rank + c.qk_rope_head_dim);
    const double kv_b = double(c.kv_lora_rank) * heads * double(c.qk_nope_head_dim + c.v_head_dim);
    attention = 2 * tokens * (q + kv_a + kv_b + heads * v * H) + 2 * pairs * heads * (qk + v);
  } else {
    const double d = double(c.head_dim), heads = double(c.num_heads), kv = double(c.num_kv_heads);
    attention = 2 * tokens * H * d * (heads + 2 * kv) + 2 * tokens * heads * d * H + 2 * pairs * heads * 2 * d;
  }
  double total = 0;
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    total += attention;
    if (c.is_moe_layer(layer)) {
      const double experts = double(c.experts_per_token) + double(c.n_shared_experts);
      total += 2 * tokens * H * double(c.num_experts) + 2 * tokens * experts * 3 * H * double(c.moe_intermediate);
    } else {
      total += 2 * tokens * 3 * H * double(c.intermediate);
    }
  }
  return total;
}

}  // namespace lb
