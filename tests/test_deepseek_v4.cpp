// The DeepSeek-V4 reference against what transformers 5.17's deepseek_v4 computed on a tiny model
// with every layer kind (tests/fixtures/deepseek_v4_tiny, made by make_v4_fixtures.py on the GPU
// machine, fp32 on CPU): each layer's residual streams, the final norm and the logits.
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "oracles/compare.h"
#include "oracles/deepseek_v4_model.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace lb {
namespace {

constexpr double kMaxRelL2 = 1e-5;

struct V4Fixture {
  DeepseekV4Config config;
  std::map<std::string, torch::Tensor> weights;
  std::map<std::string, torch::Tensor> expected;
};

V4Fixture load_fixture() {
  const std::string dir = test::fixture_dir("deepseek_v4_tiny");
  V4Fixture f{read_deepseek_v4_config(join_path(dir, "config.json")),
              test::read_all_tensors(join_path(dir, "model.safetensors")),
              test::read_all_tensors(join_path(dir, "expected.safetensors"))};
  return f;
}

// The largest relative L2 error over the layers, the final norm and the logits.
double worst_error(const V4Fixture& f, const DeepseekV4Output& out, bool print) {
  double worst = 0;
  auto check = [&](const std::string& name, const torch::Tensor& actual) {
    const TensorDiff d = compare_tensors(actual, f.expected.at(name));
    worst = std::max(worst, d.finite ? d.rel_l2 : 1e9);
    if (print) std::cout << "  deepseek_v4_tiny " << name << " rel_l2 " << d.rel_l2 << "\n";
  };
  for (size_t i = 0; i < out.layers.size(); ++i) check("layers." + std::to_string(i) + ".output", out.layers[i]);
  check("final_norm", out.final_norm);
  check("logits", out.logits);
  return worst;
}

TEST(DeepseekV4Fixture, EveryLayerAndLogitsMatch) {
  const V4Fixture f = load_fixture();
  // Every attention kind and both routings are in the fixture.
  EXPECT_EQ(std::count(f.config.attention.begin(), f.config.attention.end(), V4Attention::Sliding), 1);
  EXPECT_EQ(std::count(f.config.attention.begin(), f.config.attention.end(), V4Attention::CompressedSparse), 2);
  EXPECT_EQ(std::count(f.config.attention.begin(), f.config.attention.end(), V4Attention::HeavilyCompressed), 2);
  EXPECT_EQ(std::count(f.config.hash_routed.begin(), f.config.hash_routed.end(), true), 2);
  const DeepseekV4Output out = deepseek_v4_forward(f.config, f.weights, f.expected.at("input_ids"));
  ASSERT_EQ(int64_t(out.layers.size()), f.config.num_layers);
  EXPECT_LT(worst_error(f, out, true), kMaxRelL2);
}

// The same model on a GPU, fp32 (LibTorch leaves TF32 off for fp32 matmuls), against the fixture.
// The fixture's input keeps a gap at every indexer top-k boundary (make_v4_fixtures.py): with ties
// there, the GPU's top-k and the CPU's pick different entries and the outputs differ by percents.
TEST(GpuDeepseekV4, Fp32OnGpuMatchesFixture) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  const V4Fixture f = load_fixture();
  const torch::Device cuda("cuda");
  std::map<std::string, torch::Tensor> on_gpu;
  for (const auto& [name, t] : f.weights) on_gpu[name] = t.to(cuda);
  const DeepseekV4Output gpu = deepseek_v4_forward(f.config, on_gpu, f.expected.at("input_ids").to(cuda));
  EXPECT_TRUE(gpu.logits.is_cuda());
  DeepseekV4Output back{{}, gpu.final_norm.cpu(), gpu.logits.cpu()};
  for (const torch::Tensor& layer : gpu.layers) back.layers.push_back(layer.cpu());
  EXPECT_LT(worst_error(f, back, true), kMaxRelL2);
}

// The check must be able to fail: perturbing any one of these moves some output past the bound
// (the indexer's query is flipped, since a small change seldom changes which entries it picks).
TEST(DeepseekV4Fixture, PerturbedPartsFail) {
  const V4Fixture f = load_fixture();
  for (const std::string name : {"model.layers.0.self_attn.sinks", "model.layers.1.self_attn.compressor.position_bias",
                                 "model.layers.2.self_attn.compressor.kv_proj.weight", "model.layers.1.attn_hc.fn",
                                 "model.layers.0.mlp.gate.weight", "model.hc_head.hc_base"}) {
    V4Fixture g = f;
    g.weights[name] = f.weights.at(name) * 1.05 + 0.01;
    EXPECT_GT(worst_error(g, deepseek_v4_forward(g.config, g.weights, g.expected.at("input_ids")), false), kMaxRelL2)
        << name;
  }
  V4Fixture g = f;
  const std::string indexer_q = "model.layers.3.self_attn.compressor.indexer.q_b_proj.weight";
  g.weights[indexer_q] = -f.weights.at(indexer_q);
  EXPECT_GT(worst_error(g, deepseek_v4_forward(g.config, g.weights, g.expected.at("input_ids")), false), kMaxRelL2);
  g = f;
  g.weights["model.layers.1.mlp.gate.tid2eid"] = f.weights.at("model.layers.1.mlp.gate.tid2eid").flip(1).roll(1, 0);
  EXPECT_GT(worst_error(g, deepseek_v4_forward(g.config, g.weights, g.expected.at("input_ids")), false), kMaxRelL2);
}

TEST(DeepseekV4Config, BadConfigsNameTheProblem) {
  const std::string dir = test::fixture_dir("deepseek_v4_tiny");
  std::ifstream in(join_path(dir, "config.json"));
  nlohmann::json good;
  in >> good;
  const test::TempDir tmp;
  const std::string path = join_path(tmp.path, "config.json");
  auto expect_error = [&](nlohmann::json j, const std::string& needle) {
    std::ofstream(path) << j.dump();
    try {
      read_deepseek_v4_config(path);
      ADD_FAILURE() << "accepted a config with " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  nlohmann::json j = good;
  j["model_type"] = "deepseek_v3";
  expect_error(j, "not deepseek_v4");
  j = good;
  j.erase("o_groups");
  expect_error(j, "o_groups");
  j = good;
  j["layer_types"][1] = "full_attention";
  expect_error(j, "full_attention");
  j = good;
  j["scoring_func"] = "softmax";
  expect_error(j, "scoring_func");
  j = good;
  j["mlp_layer_types"].erase(0);
  expect_error(j, "num_hidden_layers");
}

}  // namespace
}  // namespace lb
