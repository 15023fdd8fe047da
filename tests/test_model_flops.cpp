// The prefill arithmetic count against an independent figure: anchors.md puts one Qwen3-30B-A3B
// layer at 4096 tokens (projections, causal attention, 8 of 128 experts) at about 0.6 TFLOP.
#include "harness/model/model_flops.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(ModelFlops, QwenLayerAt4096TokensIsAbout06Tflop) {
  ModelConfig c = load_model_config("qwen3-30b-a3b");
  c.num_layers = 1;
  const double flops = prefill_flops(c, {4096});
  EXPECT_GT(flops, 0.55e12);
  EXPECT_LT(flops, 0.65e12);
  // Causal attention grows with the square of a sequence's length, the rest linearly.
  const double two = prefill_flops(c, {2048, 2048});
  EXPECT_LT(two, flops);
  EXPECT_GT(two, 0.5 * flops);
  // Every layer counts.
  c.num_layers = 4;
  EXPECT_NEAR(prefill_flops(c, {4096}), 4 * flops, 1e-6 * flops);
}

TEST(ModelFlops, DeepSeekDenseAndMoeLayersDiffer) {
  ModelConfig c = load_model_config("deepseek-v3");
  c.num_layers = 4;  // 3 dense, 1 MoE
  const double all = prefill_flops(c, {1000});
  c.num_layers = 3;
  const double dense = prefill_flops(c, {1000});
  EXPECT_GT(all - dense, dense / 3) << "the MoE layer (8 routed + 1 shared expert of 256) costs more than a dense one";
}

}  // namespace
}  // namespace lb
