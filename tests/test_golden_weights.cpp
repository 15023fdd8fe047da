// Golden values of the random weights: the first elements of rows of several tensors per (preset,
// name, seed), hard-coded. Random weights promise the same numbers whatever the rank count, device
// or LibTorch version; two calls in one process cannot show that, these literals can: CI checks
// them with LibTorch 1.13 on a CPU, the GPU machine with LibTorch 2 on CUDA. The literals were
// printed by this test (LB_PRINT_GOLDEN=1) at their commit; a change of the generator must change
// them on purpose.
#include "harness/model/model_config.h"
#include "harness/model/model_tensors.h"
#include "harness/model/random_weights.h"
#include "oracles/deepseek_v4_presets.h"
#include "oracles/deepseek_v4_weights.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace lb {
namespace {

struct Golden {
  std::string preset, name;
  uint64_t seed;
  int64_t row;                 // of dim 0
  std::vector<float> values;  // its first elements, float32
};

const std::vector<Golden>& qwen_deepseek_goldens() {
  static const std::vector<Golden> goldens = {
      {"qwen3-30b-a3b", "model.embed_tokens.weight", 0, 0, {-0.874872208f, -1.298298f, -0.940756559f, 1.11561263f}},
      {"qwen3-30b-a3b", "model.embed_tokens.weight", 1, 151935,
       {-1.65274489f, -0.914636493f, -1.56225431f, 0.423721254f}},
      {"qwen3-30b-a3b", "model.layers.0.self_attn.q_proj.weight", 0, 4095,
       {0.00433329027f, 0.0304094162f, -0.013859855f, 0.00048454979f}},
      {"qwen3-30b-a3b", "model.layers.47.mlp.experts.127.down_proj.weight", 0, 2047,
       {-0.00265939883f, -0.00182977878f, 0.00332138664f, -0.00265864981f}},
      {"qwen3-30b-a3b", "model.layers.0.input_layernorm.weight", 0, 7, {1.08072364f}},
      {"qwen3-30b-a3b", "model.layers.3.self_attn.k_norm.weight", 7, 5, {1.09336436f}},
      {"deepseek-v3", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 0, 575,
       {-0.00248510786f, 0.0184057131f, 0.0103187151f, -0.0170910824f}},
      {"deepseek-v3", "model.layers.3.mlp.gate.e_score_correction_bias", 0, 200, {-0.0461371653f}},
      {"deepseek-v3", "model.layers.60.mlp.experts.255.gate_proj.weight", 3, 2047,
       {0.0159324631f, -0.00806196686f, -0.00370821916f, 0.00556395762f}},
      {"deepseek-v3", "model.layers.5.mlp.shared_experts.up_proj.weight", 0, 100,
       {-0.00758152315f, 0.00585575681f, -0.0177016966f, 0.000421122764f}},
      {"deepseek-v3", "lm_head.weight", 0, 129279, {-0.00198827358f, 0.0174219888f, 0.0143156573f, -0.0085240854f}},
      {"tiny-qwen3-moe", "model.layers.0.mlp.gate.weight", 0, 1,
       {-0.124298818f, -0.0119817993f, -0.0738081709f, -0.130751118f}},
  };
  return goldens;
}

const std::vector<Golden>& v4_goldens() {
  static const std::vector<Golden> goldens = {
      {"tiny-deepseek-v4", "model.embed_tokens.weight", 0, 3,
       {0.211279184f, -0.183611214f, 0.0202460568f, 0.0014489491f}},
      {"tiny-deepseek-v4", "model.hc_head.hc_base", 0, 0, {-0.313201964f}},
      {"tiny-deepseek-v4", "model.layers.0.self_attn.q_a_proj.weight", 0, 1,
       {0.0451591052f, -0.187766716f, 0.081107907f, 0.143406019f}},
      {"tiny-deepseek-v4", "model.layers.1.mlp.experts.down_proj", 5, 2,
       {0.0125809023f, 0.283475608f, 0.0792686716f, -0.253689557f}},
      {"tiny-deepseek-v4", "model.layers.0.input_layernorm.weight", 5, 0, {1.49206209f}},
  };
  return goldens;
}

bool print_mode() { return std::getenv("LB_PRINT_GOLDEN") != nullptr; }

void print(const Golden& g, const torch::Tensor& row) {
  std::cout << "      {\"" << g.preset << "\", \"" << g.name << "\", " << g.seed << ", " << g.row << ", {";
  for (int64_t i = 0; i < row.numel(); ++i)
    std::cout << (i ? ", " : "") << std::setprecision(9) << row[i].item<float>() << "f";
  std::cout << "}},\n";
}

void expect_row(const Golden& g, const torch::Tensor& row, const std::string& where) {
  if (print_mode()) return print(g, row.cpu());
  ASSERT_EQ(row.numel(), int64_t(g.values.size())) << where;
  const torch::Tensor cpu = row.cpu();
  for (size_t i = 0; i < g.values.size(); ++i)
    EXPECT_EQ(cpu[int64_t(i)].item<float>(), g.values[i]) << where << " " << g.name << " seed " << g.seed << " row "
                                                          << g.row << " element " << i;
}

void check_qwen_deepseek(torch::Device device) {
  ASSERT_GE(qwen_deepseek_goldens().size(), 8u) << "the golden table is empty (LB_PRINT_GOLDEN=1 prints it)";
  for (const Golden& g : qwen_deepseek_goldens()) {
    const ModelConfig config = *find_preset(g.preset);
    const TensorSpec spec = tensor_spec(config, g.name);
    // Only the wanted row is made (a rank's slice is the same numbers as the full tensor's).
    const torch::Tensor t = random_tensor(spec, config, g.seed, torch::kFloat32, device, Slice{0, g.row, 1});
    expect_row(g, t.flatten().narrow(0, 0, std::min<int64_t>(t.numel(), int64_t(g.values.size()))), g.preset);
  }
}

void check_v4(torch::Device device) {
  ASSERT_GE(v4_goldens().size(), 3u) << "the golden table is empty (LB_PRINT_GOLDEN=1 prints it)";
  for (const uint64_t seed : {uint64_t(0), uint64_t(5)}) {
    const auto weights = random_deepseek_v4_weights(*find_deepseek_v4_preset("tiny-deepseek-v4"), seed, device);
    for (const Golden& g : v4_goldens()) {
      if (g.seed != seed) continue;
      const torch::Tensor t = weights.at(g.name)[g.row].flatten().to(torch::kFloat32);
      expect_row(g, t.narrow(0, 0, std::min<int64_t>(t.numel(), int64_t(g.values.size()))), "tiny-deepseek-v4");
    }
  }
}

TEST(GoldenWeights, QwenAndDeepSeekOnCpu) { check_qwen_deepseek(torch::kCPU); }
TEST(GoldenWeights, DeepSeekV4OnCpu) { check_v4(torch::kCPU); }

TEST(GpuGoldenWeights, QwenAndDeepSeekOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  check_qwen_deepseek(torch::Device("cuda"));
}

TEST(GpuGoldenWeights, DeepSeekV4OnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  check_v4(torch::Device("cuda"));
}

}  // namespace
}  // namespace lb
