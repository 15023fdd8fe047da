#pragma once
// Causal attention over a packed batch of sequences without padding.
#include <torch/torch.h>

namespace lb {

// Which sequence each token belongs to and its position in that sequence. The query and key
// sides are described separately, so a context-parallel rank can attend with its own queries
// to keys gathered from every rank: a query sees the keys of its own sequence at positions <= its own.
struct TokenPlacement {
  torch::Tensor seq;  // int64 [T]
  torch::Tensor pos;  // int64 [T]
  // seq's values in host memory where its maker knew them (packed_placement, a layout's placements;
  // undefined otherwise): attention groups rows by sequence on the host, and reading seq back from
  // a GPU waits for every queued kernel, after which the GPU idles while the host issues the next
  // ones (a third of an 8192-token one-GPU prefill's span on an H200). Whoever changes seq changes
  // this too.
  torch::Tensor seq_host;
};

// Tokens of sequences laid end to end: sequence s has seq_lens[s] tokens at positions 0..len-1,
// or, given `past` (generation), at past[s]..past[s]+len-1, after the tokens already in its cache.
TokenPlacement packed_placement(const std::vector<int64_t>& seq_lens, torch::Device device,
                                const std::vector<int64_t>& past = {});

// q: [Tq, Hq, D], k: [Tk, Hkv, D], v: [Tk, Hkv, Dv], Hq a multiple of Hkv (query head h uses KV
// head h / (Hq / Hkv)). Scores in the input dtype, softmax in fp32 (as transformers' eager path).
// Returns [Tq, Hq, Dv].
// `fused` (`--kernels fused`, LibTorch 2): the product, mask and softmax in one
// scaled_dot_product_attention call per sequence (flash attention where q_tokens and k_tokens are
// the same object, i.e. each sequence attends to itself causally; there consecutive sequences of
// one length share a call, as its batch: each call costs ~0.1 ms of host time with cuDNN's
// backend); with LibTorch 1.13, the plain path.
// Decode-shaped calls (separate query and key placements, at most 16 queries per sequence, key
// counts within 2x of each other) take one batched plain product over all sequences instead, fused
// or not: there the per-sequence launches (and cuDNN's per-shape setup), not the arithmetic, were
// the cost. The plain path takes each sequence's queries in blocks whose scores hold at most
// `max_scores` elements (a row's result does not depend on the block), so a long sequence with
// many heads does not hold its whole [Hq, nq, nk] scores and their copies at once.
constexpr int64_t kAttentionMaxScores = int64_t(1) << 28;  // 1 GiB of fp32 scores
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const TokenPlacement& q_tokens, const TokenPlacement& k_tokens, double scale,
                               bool fused = false, int64_t max_scores = kAttentionMaxScores);

}  // namespace lb
