#pragma once
// Where each (token, expert) pair goes in a prefill's expert GEMMs, the step between the sort of the
// pairs and the GEMMs. On a GPU one kernel writes all of it; the plain ops it replaces were a dozen
// small LibTorch launches issued right after the host read the group sizes back, when the GPU had
// nothing else queued: each one's host cost was GPU idle time (~0.1 ms a layer on an H200).
#include <torch/torch.h>

namespace lb {

struct GemmSlots {
  torch::Tensor token;        // int64 [slots]: the token each GEMM row reads (padding rows: 0)
  torch::Tensor weight;       // f32 [slots]: the pair's routing weight (padding rows: 0)
  torch::Tensor row_of_pair;  // int64 [pairs]: each pair's GEMM row, -1 where its expert is held elsewhere
};

// order [pairs]: pair ids (token * k + choice) sorted by held expert, `expert` the key of each
// (pairs held elsewhere last, rows of them here), offsets [held + 1] each expert's first position;
// weights [tokens, k] the routing weights. `most` > 0: padded layout, expert e's pairs in rows
// e * most .. (e + 1) * most - 1 (held * most rows); most == 0: the pairs' sorted positions (rows).
GemmSlots gemm_slots(const torch::Tensor& order, const torch::Tensor& expert, const torch::Tensor& offsets,
                     const torch::Tensor& weights, int64_t rows, int64_t k, int64_t most);

}  // namespace lb
