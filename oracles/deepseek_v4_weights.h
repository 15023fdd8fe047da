#pragma once
// The weights of a deepseek_v4 model by transformers' names (fused experts): what tensors a config
// needs, drawn at random or read from a checkpoint directory.
#include "oracles/deepseek_v4_model.h"

#include <map>
#include <string>
#include <vector>

namespace lb {

struct V4TensorSpec {
  enum class Init { Linear, Norm, Small, HashTable };
  std::string name;
  std::vector<int64_t> shape;
  Init init = Init::Linear;
};

// Every tensor transformers' DeepseekV4ForCausalLM holds for `config` (rotary tables aside).
std::vector<V4TensorSpec> deepseek_v4_tensor_specs(const DeepseekV4Config& config);

// Random weights in float32 (tid2eid int64) on `device`, the same numbers on any device: each element
// is a hash of (seed, name, index) (harness/model/random_weights.h). The scales keep activations O(1), as
// the transformers fixture's do: linear weights uniform with variance 1/in, norm weights in
// (0.5, 1.5), sinks, biases and hyper-connection scales with standard deviation 0.3; tid2eid gives
// each token id experts_per_token distinct experts. Large tensors are drawn a block of rows at a
// time, so the hash's temporaries stay small.
std::map<std::string, torch::Tensor> random_deepseek_v4_weights(const DeepseekV4Config& config, uint64_t seed,
                                                                torch::Device device);

// Every tensor of the specs from the checkpoint in `dir` (model.safetensors or an index with
// shards), shape-checked, as float32 (tid2eid int64) on `device`. InputError naming a missing or
// misshapen tensor.
std::map<std::string, torch::Tensor> load_deepseek_v4_weights(const DeepseekV4Config& config, const std::string& dir,
                                                              torch::Device device);

}  // namespace lb
