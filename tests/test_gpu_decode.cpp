// Decode on GPUs: the same steps with CUDA graphs on and off give bit-identical logits (a replay runs
// the captured kernels on the inputs of the step), for the fused reference and for layouts on one
// GPU (and two, where there are two), for a full bucket and a padded one. Skips without a GPU or
// where this build cannot capture graphs.
#include "harness/runtime/cuda_graph.h"
#include "harness/runtime/device.h"
#include "harness/runtime/launch.h"
#include "harness/model/random_weights.h"
#include "layouts/generation.h"
#include "test_util.h"

#include <iostream>

namespace lb {
namespace {

bool skip_reason(std::string& why) {
  if (!torch::cuda::is_available()) why = "no GPU";
  else if (!cuda_graphs_supported()) why = "this build cannot capture CUDA graphs";
  return !why.empty();
}

// A prefill, then `steps` greedy decode steps; every step's logits, on the CPU.
std::vector<torch::Tensor> run_steps(StepModel& model, const std::vector<std::vector<int64_t>>& prompts, int steps) {
  model.start_batch(int64_t(prompts.size()), 64);
  torch::Tensor logits = model.prefill(prompts);
  std::vector<torch::Tensor> out = {logits.to(torch::kCPU)};
  for (int s = 0; s < steps; ++s) {
    logits = model.decode(logits.argmax(1));
    out.push_back(logits.to(torch::kCPU));
  }
  return out;
}

// A tiny preset with sizes the fused decode kernels take (the tiny presets' odd sizes send the MoE
// to the grouped-GEMM path, which reads group sizes on the host and so cannot be captured).
ModelConfig graph_config(const char* preset) {
  ModelConfig c = load_model_config(preset);
  c.hidden = 64;
  c.moe_intermediate = 32;
  c.intermediate = 64;
  return c;
}

std::vector<std::vector<int64_t>> prompts(int64_t n, int64_t vocab) {
  torch::manual_seed(5);
  std::vector<std::vector<int64_t>> p;
  for (int64_t i = 0; i < n; ++i) {
    const torch::Tensor t = torch::randint(vocab, {7 + 3 * i}, torch::kInt64);
    p.emplace_back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }
  return p;
}

void expect_identical(const std::vector<torch::Tensor>& off, const std::vector<torch::Tensor>& on, const std::string& what) {
  ASSERT_EQ(off.size(), on.size());
  for (size_t s = 0; s < off.size(); ++s) {
    EXPECT_TRUE(torch::equal(off[s], on[s])) << what << ": step " << s << " differs by "
                                             << (off[s] - on[s]).abs().max().item<float>();
    EXPECT_TRUE(torch::isfinite(on[s]).all().item<bool>()) << what;
  }
}

TEST(GpuDecodeGraphs, ReferenceGraphsOnAndOffAreBitIdentical) {
  std::string why;
  if (skip_reason(why)) GTEST_SKIP() << why;
  for (const char* preset : {"tiny-qwen3-moe", "tiny-deepseek-v3"})
    for (int64_t n : {4, 3}) {  // a full bucket, and one padded to 4
      const ModelConfig config = graph_config(preset);
      auto weights = open_weights(config, "", 1);
      ReferenceModel model(config, *weights, {torch::kBFloat16, torch::Device("cuda"), /*fused=*/true});
      ReferenceStepModel off(model, {false}), on(model, {true});
      expect_identical(run_steps(off, prompts(n, config.vocab), 6), run_steps(on, prompts(n, config.vocab), 6),
                       std::string(preset) + " batch " + std::to_string(n));
    }
}

TEST(GpuDecodeGraphs, LayoutGraphsOnAndOffAreBitIdentical) {
  std::string why;
  if (skip_reason(why)) GTEST_SKIP() << why;
  const int gpus = std::min<int>(2, int(torch::cuda::device_count()));
  for (const char* preset : {"tiny-qwen3-moe", "tiny-deepseek-v3"}) {
    const ModelConfig config = graph_config(preset);
    auto weights = open_weights(config, "", 1);
    for (const char* name : {"tp", "cp-fused-moe", "dp-attn-rsv"}) {
      if (gpus < 2 && std::string(name) != "tp") continue;
      const LayoutSpec& spec = find_layout(name);
      const ParallelConfig parallel = layout_parallel(spec, gpus, config);
      std::vector<torch::Tensor> off, on;
      // Names the case in the failure: a rank that hangs here ends the run through the collective
      // watch, and later cases would only wait on the device it left busy.
      const std::string what = std::string(preset) + " " + name + " on " + std::to_string(gpus) + " GPUs";
      std::cout << "[ graphs   ] " << what << std::endl;
      try {
        run_ranks(Backend::Nccl, gpus, [&](RankContext& ctx) {
          LayoutRank rank(ctx, spec, parallel, config, *weights, {torch::kBFloat16, ctx.device(), true}, {});
          LayoutStepModel a(rank, ctx.device(), {false});
          std::vector<torch::Tensor> x = run_steps(a, prompts(5, config.vocab), 5);
          LayoutStepModel b(rank, ctx.device(), {true});
          std::vector<torch::Tensor> y = run_steps(b, prompts(5, config.vocab), 5);
          if (ctx.rank() == 0) off = std::move(x), on = std::move(y);
          ctx.quiesce();
        });
      } catch (const std::exception& e) {
        FAIL() << what << ": " << e.what();
      }
      expect_identical(off, on, what);
    }
  }
}

}  // namespace
}  // namespace lb
