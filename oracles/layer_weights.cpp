#include "oracles/layer_weights.h"

#include <stdexcept>
#include <vector>

namespace lb {

const torch::Tensor& LayerWeights::operator[](const std::string& suffix) const {
  auto it = tensors.find(suffix);
  if (it == tensors.end())
    throw std::logic_error("layer " + std::to_string(layer) + " has no weight '" + suffix + "'");
  return it->second;
}

int64_t LayerWeights::bytes() const {
  int64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel() * t.element_size();
  for (const torch::Tensor* t : {&experts.gate, &experts.up, &experts.down})
    if (t->defined()) total += t->numel() * t->element_size();
  return total;
}

void fuse_qkv(LayerWeights& w) {
  const char* names[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"};
  std::vector<torch::Tensor> parts;
  for (const char* name : names) {
    if (!w.has(name)) return;
    const torch::Tensor& t = w[name];
    if (t.dim() != 2 || (!parts.empty() && (t.size(1) != parts[0].size(1) || t.scalar_type() != parts[0].scalar_type() ||
                                            t.device() != parts[0].device())))
      return;
    parts.push_back(t);
  }
  w.qkv = torch::cat(parts);
  int64_t first = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    w.tensors[names[i]] = w.qkv.narrow(0, first, parts[i].size(0));
    first += parts[i].size(0);
  }
}

LayerWeights load_layer(const ModelConfig& config, const WeightSource& source, int64_t layer,
                        torch::ScalarType dtype, torch::Device device) {
  LayerWeights w;
  w.layer = layer;
  const std::string prefix = layer_prefix(layer);
  const std::string expert_prefix = prefix + "mlp.experts.";
  std::vector<torch::Tensor> gate, up, down;
  for (const TensorSpec& spec : layer_tensors(config, layer)) {
    // The router's correction bias stays fp32 (transformers keeps it fp32 too).
    const bool keep_fp32 = spec.init == InitKind::Bias;
    torch::Tensor t = source.load(spec, keep_fp32 ? torch::kFloat32 : dtype, device);
    const std::string suffix = spec.name.substr(prefix.size());
    if (spec.name.compare(0, expert_prefix.size(), expert_prefix) != 0) {
      w.tensors[suffix] = t;
      continue;
    }
    const std::string& n = spec.name;
    if (n.find(".gate_proj.") != std::string::npos) gate.push_back(t);
    else if (n.find(".up_proj.") != std::string::npos) up.push_back(t);
    else down.push_back(t);
  }
  if (!gate.empty()) w.experts = stack_experts(torch::stack(gate), torch::stack(up), torch::stack(down));
  return w;
}

}  // namespace lb
