#include "oracles/op_capture.h"

#include <algorithm>
#include <stdexcept>

namespace lb {

const std::vector<std::string>& capture_ops() {
  static const std::vector<std::string> ops = {"attn_norm",     "q",            "kv",           "attn_out",
                                               "o_proj",        "residual",     "router_logits", "topk_experts",
                                               "topk_weights",  "mlp_out",      "layer_out"};
  return ops;
}

LayerCapture LayerCapture::routing_only() {
  LayerCapture c;
  c.routing_only_ = true;
  return c;
}

void LayerCapture::add(const std::string& op, const torch::Tensor& t, const torch::Tensor& tokens, int64_t col_offset) {
  const auto& ops = capture_ops();
  if (std::find(ops.begin(), ops.end(), op) == ops.end()) throw std::logic_error("unknown capture point " + op);
  if (routing_only_ && op != "router_logits" && op != "topk_experts" && op != "topk_weights") return;
  if (t.size(0) != tokens.size(0))
    throw std::logic_error("capture " + op + ": " + std::to_string(t.size(0)) + " rows for " +
                           std::to_string(tokens.size(0)) + " tokens");
  ops_[op] = {(t.dim() == 1 ? t.unsqueeze(1) : t.flatten(1)).to(torch::kFloat32), tokens.to(torch::kInt64), col_offset};
}

void LayerCapture::add_routing(const Routing& routing, const torch::Tensor& tokens) {
  if (!routing.experts.defined()) return;
  add("router_logits", routing.logits, tokens);
  add("topk_experts", routing.experts, tokens);
  add("topk_weights", routing.weights, tokens);
}

const OpPiece* LayerCapture::find(const std::string& op) const {
  auto it = ops_.find(op);
  return it == ops_.end() ? nullptr : &it->second;
}

InOrderCapture::InOrderCapture(LayerCapture* capture, const torch::Tensor& x) : capture_(capture) {
  if (capture_) all_ = torch::arange(x.size(0), torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
}

void InOrderCapture::operator()(const std::string& op, const torch::Tensor& t) const {
  if (capture_) capture_->add(op, t, all_);
}

void InOrderCapture::routing(const Routing& routing) const {
  if (capture_) capture_->add_routing(routing, all_);
}

}  // namespace lb
