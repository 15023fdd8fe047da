#include "harness/model/random_weights.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(RandomWeights, DeterministicAndDistinctByName) {
  auto a = hashed_uniform("model.layers.0.mlp.gate.weight", 7, {33, 17}, torch::kCPU);
  auto b = hashed_uniform("model.layers.0.mlp.gate.weight", 7, {33, 17}, torch::kCPU);
  auto c = hashed_uniform("model.layers.1.mlp.gate.weight", 7, {33, 17}, torch::kCPU);
  auto d = hashed_uniform("model.layers.0.mlp.gate.weight", 8, {33, 17}, torch::kCPU);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::allclose(a, c));
  EXPECT_FALSE(torch::allclose(a, d));
}

TEST(RandomWeights, UnitVarianceUniform) {
  auto u = hashed_uniform("stats", 0, {1000, 1000}, torch::kCPU).to(torch::kFloat64);
  EXPECT_NEAR(u.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(u.std().item<double>(), 1.0, 0.01);
  EXPECT_LE(u.abs().max().item<double>(), std::sqrt(3.0));
  // Neighbouring elements are uncorrelated (a weak hash would show structure here).
  auto flat = u.flatten();
  double corr = (flat.narrow(0, 0, flat.numel() - 1) * flat.narrow(0, 1, flat.numel() - 1)).mean().item<double>();
  EXPECT_NEAR(corr, 0.0, 0.01);
}

// A rank that makes only its shard gets exactly the elements of the full tensor.
TEST(RandomWeights, SliceEqualsNarrowOfFullTensor) {
  const std::vector<int64_t> shape = {6, 35, 11};
  auto full = hashed_uniform("experts", 3, shape, torch::kCPU);
  for (int64_t dim = 0; dim < 3; ++dim) {
    const int64_t start = 1, length = shape[dim] - 2;
    auto part = hashed_uniform("experts", 3, shape, torch::kCPU, Slice{dim, start, length});
    EXPECT_TRUE(torch::equal(part, full.narrow(dim, start, length))) << "dim " << dim;
  }
}

// Made a few rows at a time (as a large table is), every slice has the same elements as made at once.
TEST(RandomWeights, BlocksDoNotChangeTheValues) {
  const std::vector<int64_t> shape = {7, 13, 5};
  const torch::Tensor whole = hashed_uniform("table", 4, shape, torch::kCPU, std::nullopt, int64_t(1) << 30);
  for (int64_t block : {int64_t(1), int64_t(64), int64_t(66), int64_t(200)}) {
    EXPECT_TRUE(torch::equal(hashed_uniform("table", 4, shape, torch::kCPU, std::nullopt, block), whole)) << block;
    for (int64_t dim = 0; dim < 3; ++dim) {
      const Slice slice{dim, 2, shape[dim] - 3};
      EXPECT_TRUE(torch::equal(hashed_uniform("table", 4, shape, torch::kCPU, slice, block),
                               whole.narrow(dim, slice.start, slice.length)))
          << "block " << block << " dim " << dim;
    }
  }
  ModelConfig config = *find_preset("tiny-qwen3-moe");
  const TensorSpec spec{"w", {9, 16}, InitKind::OutputLinear};
  const torch::Tensor once = random_tensor(spec, config, 2, torch::kBFloat16, torch::kCPU, Slice{1, 3, 8}, 1 << 30);
  EXPECT_TRUE(torch::equal(random_tensor(spec, config, 2, torch::kBFloat16, torch::kCPU, Slice{1, 3, 8}, 10), once));
  // Another seed gives other values: the comparison above can fail.
  EXPECT_FALSE(torch::equal(random_tensor(spec, config, 3, torch::kBFloat16, torch::kCPU, Slice{1, 3, 8}, 10), once));
}

TEST(RandomWeights, InitKindsScaleAsDocumented) {
  ModelConfig config = *find_preset("tiny-qwen3-moe");
  auto std_of = [&](InitKind kind, std::vector<int64_t> shape) {
    TensorSpec spec{"w", shape, kind};
    return random_tensor(spec, config, 0, torch::kFloat64, torch::kCPU).std().item<double>();
  };
  EXPECT_NEAR(std_of(InitKind::Linear, {512, 400}), 1.0 / std::sqrt(400.0), 0.002);
  EXPECT_NEAR(std_of(InitKind::Embedding, {512, 400}), 1.0, 0.01);
  TensorSpec norm{"n", {4000}, InitKind::Norm};
  auto n = random_tensor(norm, config, 0, torch::kFloat32, torch::kCPU);
  EXPECT_NEAR(n.mean().item<double>(), 1.0, 0.01);
  EXPECT_LE((n - 1).abs().max().item<double>(), 0.1 + 1e-6);
}

}  // namespace
}  // namespace lb
