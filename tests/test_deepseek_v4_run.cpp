// DeepSeek-V4 under `layoutbench check` and `layoutbench bench` (harness/cli/deepseek_v4_family.h): the
// presets and random weights have transformers' names and the real shapes, the check passes the
// layouts on 2 and 4 CPU ranks and fails planted bugs, bench records the ratio, and flags that do
// not apply to V4 are refused by name.
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "oracles/deepseek_v4_presets.h"
#include "oracles/deepseek_v4_weights.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

namespace lb {
namespace {

std::map<std::string, std::vector<int64_t>> spec_shapes(const DeepseekV4Config& c) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const V4TensorSpec& s : deepseek_v4_tensor_specs(c)) out[s.name] = s.shape;
  return out;
}

TEST(DeepseekV4Weights, SpecsAreTransformersStateDict) {
  const std::string dir = test::fixture_dir("deepseek_v4_tiny");
  const DeepseekV4Config config = read_deepseek_v4_config(join_path(dir, "config.json"));
  const SafetensorsFile file(join_path(dir, "model.safetensors"));
  std::map<std::string, std::vector<int64_t>> saved;
  for (const auto& [name, info] : file.tensors()) saved[name] = info.shape;
  EXPECT_EQ(spec_shapes(config), saved);
}

TEST(DeepseekV4Weights, RandomWeightsAreSeededAndScaled) {
  const DeepseekV4Config c = *find_deepseek_v4_preset("tiny-deepseek-v4");
  const auto a = random_deepseek_v4_weights(c, 3, torch::kCPU), b = random_deepseek_v4_weights(c, 3, torch::kCPU);
  const auto other = random_deepseek_v4_weights(c, 4, torch::kCPU);
  ASSERT_EQ(a.size(), spec_shapes(c).size());
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
    EXPECT_FALSE(torch::equal(t, other.at(name))) << name;
    EXPECT_EQ(t.sizes().vec(), spec_shapes(c).at(name)) << name;
  }
  const torch::Tensor norm = a.at("model.layers.0.input_layernorm.weight");
  EXPECT_GT(norm.min().item<double>(), 0.5);
  EXPECT_LT(norm.max().item<double>(), 1.5);
  const torch::Tensor experts = a.at("model.layers.0.mlp.experts.gate_up_proj");  // [E, 2I, hidden]
  EXPECT_NEAR(experts.std().item<double>() * std::sqrt(double(c.hidden)), 1.0, 0.05);
  // Row blocks are drawn apart: no two experts alike.
  EXPECT_GT((experts[0] - experts[1]).abs().max().item<double>(), 0.1);
  const torch::Tensor table = a.at("model.layers.0.mlp.gate.tid2eid");
  EXPECT_EQ(table.scalar_type(), torch::kInt64);
  EXPECT_GE(table.min().item<int64_t>(), 0);
  EXPECT_LT(table.max().item<int64_t>(), c.num_experts);
  for (int64_t t = 0; t < c.vocab; ++t)
    ASSERT_NE(table[t][0].item<int64_t>(), table[t][1].item<int64_t>()) << "token " << t;
}

TEST(DeepseekV4Presets, FlashHasTheHubShapes) {
  DeepseekV4Config c = *find_deepseek_v4_preset("deepseek-v4-flash");
  ASSERT_EQ(c.num_layers, 43);
  EXPECT_EQ(c.attention[0], V4Attention::Sliding);
  EXPECT_EQ(c.attention[1], V4Attention::Sliding);
  EXPECT_EQ(c.attention[2], V4Attention::CompressedSparse);
  EXPECT_EQ(c.attention[3], V4Attention::HeavilyCompressed);
  EXPECT_EQ(c.attention[42], V4Attention::CompressedSparse);
  EXPECT_TRUE(c.hash_routed[2]);
  EXPECT_FALSE(c.hash_routed[3]);
  keep_first_v4_layers(c, 4);
  // The shapes of the hub checkpoint's layer 0 (attn.wq_b, attn.wo_a, attn.wkv, ffn.gate,
  // hc_attn_fn, ffn.gate.tid2eid), under transformers' names.
  const auto shapes = spec_shapes(c);
  const std::string p = "model.layers.0.";
  EXPECT_EQ(shapes.at(p + "self_attn.q_b_proj.weight"), (std::vector<int64_t>{32768, 1024}));
  EXPECT_EQ(shapes.at(p + "self_attn.o_a_proj.weight"), (std::vector<int64_t>{8192, 4096}));
  EXPECT_EQ(shapes.at(p + "self_attn.kv_proj.weight"), (std::vector<int64_t>{512, 4096}));
  EXPECT_EQ(shapes.at(p + "mlp.gate.weight"), (std::vector<int64_t>{256, 4096}));
  EXPECT_EQ(shapes.at(p + "attn_hc.fn"), (std::vector<int64_t>{24, 16384}));
  EXPECT_EQ(shapes.at(p + "mlp.gate.tid2eid"), (std::vector<int64_t>{129280, 6}));
  EXPECT_EQ(shapes.at("model.layers.3.mlp.experts.down_proj"), (std::vector<int64_t>{256, 4096, 2048}));
  EXPECT_EQ(shapes.count("model.layers.3.self_attn.compressor.indexer.q_b_proj.weight"), 0u);
  EXPECT_EQ(shapes.at("model.layers.2.self_attn.compressor.indexer.q_b_proj.weight"),
            (std::vector<int64_t>{8192, 1024}));
  EXPECT_THROW(keep_first_v4_layers(c, 5), InputError);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(DeepseekV4Check, LayoutsPassOnTwoAndFourRanks) {
  for (const std::string ranks : {"2", "4"}) {
    test::TempDir dir;
    const test::CliResult r = test::run_cli({"check", "--model", "tiny-deepseek-v4", "--backend", "cpu", "--ranks",
                                             ranks, "--tokens", "48", "--json", dir / "check.json"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const nlohmann::json j = read_json(dir / "check.json");
    ASSERT_EQ(j["layouts"].size(), 2u);
    for (const auto& layout : j["layouts"]) {
      EXPECT_TRUE(layout["pass"].get<bool>()) << layout.dump();
      ASSERT_EQ(layout["layers"].size(), 5u);
      EXPECT_EQ(layout["layers"][4]["layer"], 4);
      ASSERT_EQ(layout["head"].size(), 2u);  // the final norm, the logits
      EXPECT_EQ(layout["head"][1]["output"], "logits");
      for (const char* part : {"layers", "head"}) {
        for (const auto& o : layout[part]) EXPECT_LT(o["rel_l2"].get<double>(), 1e-5) << o.dump();
        // The tiny model has no near-ties: on its own choices every row matches too.
        for (const auto& o : layout["own_choices"][part]) EXPECT_EQ(o["rows_past_threshold"].get<int64_t>(), 0);
      }
      EXPECT_EQ(layout["own_choices"]["first_moved"], "");
    }
    EXPECT_EQ(j["layouts"][1]["rows_per_rank"].get<int64_t>(), 48 / std::stoi(ranks));
  }
}

TEST(DeepseekV4Check, FixtureCheckpointPasses) {
  const test::CliResult r = test::run_cli({"check", "--model", test::fixture_dir("deepseek_v4_tiny"), "--backend",
                                           "cpu", "--ranks", "2", "--lengths", "40"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("all layouts match the reference"), std::string::npos) << r.out;
}

TEST(DeepseekV4Check, PlantedBugsFail) {
  for (const std::string mutation : {"round-robin-keys-as-contiguous", "reduce-scatterv-off-by-one"}) {
    const test::CliResult r = test::run_cli({"check", "--model", "tiny-deepseek-v4", "--backend", "cpu", "--ranks",
                                             "2", "--tokens", "48", "--layout", "cp-fused-moe", "--mutation", mutation});
    EXPECT_EQ(r.code, 1) << mutation << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find("first divergence: layer 0"), std::string::npos) << mutation << "\n" << r.out;
    EXPECT_NE(r.out.find("of 48 (MORE THAN 1% OF THE ROWS"), std::string::npos) << r.out;
  }
}

TEST(DeepseekV4Bench, RecordsTheRatio) {
  test::TempDir dir;
  const test::CliResult r = test::run_cli({"bench", "--model", "tiny-deepseek-v4", "--backend", "cpu", "--ranks", "2",
                                           "--layout", "tp,cp-fused-moe", "--tokens", "32", "--repeats", "2",
                                           "--json", dir / "bench.json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json j = read_json(dir / "bench.json");
  ASSERT_EQ(j["ratios"].size(), 1u);
  EXPECT_GT(j["ratios"][0]["prefill_speedup"].get<double>(), 0);
  const auto& changed = j["ratios"][0]["changed_collectives"];
  EXPECT_EQ(changed["baseline_ops"], nlohmann::json({"all_reduce@world"}));
  EXPECT_EQ(changed["layout_ops"], nlohmann::json({"all_gather@world", "reduce_scatter@world"}));
  EXPECT_EQ(j["layouts"][0]["prefill_collectives"]["all_reduce@world"]["calls"].get<int64_t>(), 2 * 5);
}

TEST(DeepseekV4Check, FlagsThatDoNotApplyAreRefused) {
  auto expect_refused = [](std::vector<std::string> extra, const std::string& needle) {
    std::vector<std::string> args = {"check", "--model", "tiny-deepseek-v4", "--backend", "cpu", "--ranks", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    const test::CliResult r = test::run_cli(args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.err;
  };
  expect_refused({"--capture", "op"}, "--capture does not apply to DeepSeek-V4");
  expect_refused({"--dtype", "bf16"}, "--dtype does not apply to DeepSeek-V4");
  expect_refused({"--attn-cp", "2"}, "--attn-cp does not apply to DeepSeek-V4");
  expect_refused({"--lengths", "16,16"}, "DeepSeek-V4 runs one sequence");
  expect_refused({"--layout", "dp-attn-rsv"}, "--layout 'dp-attn-rsv'");
  expect_refused({"--tokens", "47", "--layout", "cp-fused-moe"}, "token count % cp must be 0");
  expect_refused({"--layers", "9"}, "--layers 9");
}

}  // namespace
}  // namespace lb
