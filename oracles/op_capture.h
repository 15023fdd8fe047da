#pragma once
// Capture points inside a decoder layer (`check --capture op`): the reference and every layout
// rank record the same named intermediate tensors, so that a divergence is located at the op
// where it starts rather than at the layer output where it shows.
#include "kernels/moe.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace lb {

// The capture points of a decoder layer, in the order the layer computes them:
//   attn_norm     input_layernorm(x)                        [T, H]
//   q             queries after RoPE (heads flattened)      [T, heads * qk_dim]      (TP: a head slice)
//   kv            Qwen: keys after RoPE; DeepSeek: the MLA latent and rotary key     (TP: a KV-head slice)
//   attn_out      attention output before o_proj            [T, heads * v_dim]       (TP: a head slice)
//   o_proj        o_proj output after the attention reduction                       [T, H]
//   residual      x + o_proj                                [T, H]
//   router_logits the router's logits                        [T, E]                  (MoE layers)
//   topk_experts  chosen experts                             [T, k]                  (MoE layers)
//   topk_weights  their weights                              [T, k]                  (MoE layers)
//   mlp_out       MoE / MLP output after the layout's reduction                     [T, H]
//   layer_out     the layer's output                         [T, H]
const std::vector<std::string>& capture_ops();

// One rank's piece of a capture point: some rows (tokens) and, for head-sharded tensors, a
// column slice of the reference's [T, C] tensor.
struct OpPiece {
  torch::Tensor rows;    // [n, c]
  torch::Tensor tokens;  // int64 [n]: the original token index of each row
  int64_t col_offset = 0;
};

class LayerCapture {
 public:
  LayerCapture() = default;
  // A capture that keeps only router_logits, topk_experts and topk_weights: what bf16 row
  // verdicts need to tell a top-k flip from a bug when no op capture was asked for.
  static LayerCapture routing_only();

  // `t` is [n, ...]; it is kept as [n, prod(...)] in float32 on its device.
  void add(const std::string& op, const torch::Tensor& t, const torch::Tensor& tokens, int64_t col_offset = 0);
  // router_logits, topk_experts and topk_weights of the rows `tokens`; nothing on a dense layer
  // (the routing is empty).
  void add_routing(const Routing& routing, const torch::Tensor& tokens);
  const OpPiece* find(const std::string& op) const;

 private:
  std::map<std::string, OpPiece> ops_;
  bool routing_only_ = false;
};

// The reference layer's view of a capture: its rows are all tokens in original order. Does
// nothing when `capture` is null, so the layer calls it unconditionally.
class InOrderCapture {
 public:
  InOrderCapture(LayerCapture* capture, const torch::Tensor& x);
  void operator()(const std::string& op, const torch::Tensor& t) const;
  void routing(const Routing& routing) const;

 private:
  LayerCapture* capture_;
  torch::Tensor all_;
};

}  // namespace lb
