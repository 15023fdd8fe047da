#include "oracles/layer_weights.h"

#include <stdexcept>

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
