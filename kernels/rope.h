#pragma once
// Rotary position embedding: the frequency table (default or YaRN, as transformers builds it)
// and its application in the "rotate_half" or DeepSeek's interleaved-pairs convention.
#include "harness/model/model_config.h"

#include <torch/torch.h>

namespace lb {

struct Rope {
  torch::Tensor inv_freq;         // float32 [dim / 2], CPU
  double attention_factor = 1.0;  // YaRN scales cos and sin by this
  int64_t dim = 0;                // rotary dimensions per head
  bool interleaved = false;       // DeepSeek checkpoints store rotary pairs as (even, odd)
};

Rope make_rope(const ModelConfig& config);

struct CosSin {
  torch::Tensor cos, sin;  // [T, dim] in the activation dtype
};
// Angles of the original token positions (int64 [T]); layouts pass each token's position in its
// sequence, wherever the token lives. `fused` on a GPU: one kernel makes the same bits (a decode
// step's table is nine LibTorch launches otherwise); inv_freq must then be on positions' device.
CosSin rope_cos_sin(const Rope& rope, const torch::Tensor& positions, torch::ScalarType dtype, bool fused = false);

// x: [T, heads, dim]. Interleaved input pairs come out de-interleaved (evens then odds), as in
// transformers; q and k get the same treatment, so their dot products are unchanged.
torch::Tensor apply_rope(const torch::Tensor& x, const CosSin& cs, bool interleaved);

}  // namespace lb
