// bf16 on the GPU against fp32 on the CPU, same weights and tokens: every layer's output must
// keep cosine > 0.999 (bf16 rounding only). Skips with a message where there is no GPU.
#include "harness/device.h"
#include "harness/safetensors.h"
#include "harness/weights.h"
#include "oracles/compare.h"
#include "oracles/reference_model.h"
#include "reports/run_record.h"
#include "test_util.h"

#include <cstdlib>

namespace lb {
namespace {

constexpr double kMinCosine = 0.999;

nlohmann::json compare_devices(const ModelConfig& config, const std::string& checkpoint, const torch::Tensor& ids,
                               const std::vector<int64_t>& seq_lens) {
  auto weights = open_weights(config, checkpoint, 0);
  ReferenceModel cpu(config, *weights, {torch::kFloat32, torch::kCPU});
  ReferenceModel gpu(config, *weights, {torch::kBFloat16, torch::Device("cuda")});
  ReferenceRun a = cpu.forward(ids, seq_lens), b = gpu.forward(ids, seq_lens);
  nlohmann::json rows = nlohmann::json::array();
  auto check = [&](const std::string& name, const torch::Tensor& gpu_out, const torch::Tensor& cpu_out) {
    TensorDiff d = compare_tensors(gpu_out, cpu_out);
    EXPECT_TRUE(d.finite) << config.name << " " << name;
    EXPECT_GT(d.cosine, kMinCosine) << config.name << " " << name << " rel_l2 " << d.rel_l2;
    std::cout << "  " << config.name << " " << name << " cosine " << d.cosine << " rel_l2 " << d.rel_l2 << "\n";
    rows.push_back({{"tensor", name}, {"cosine", d.cosine}, {"rel_l2", d.rel_l2}, {"max_abs", d.max_abs}});
  };
  for (int64_t i = 0; i < config.num_layers; ++i)
    check("layers." + std::to_string(i) + ".output", b.layer_outputs[i], a.layer_outputs[i]);
  check("logits", b.logits, a.logits);
  return {{"model", config.name}, {"tokens", ids.numel()}, {"seq_lens", seq_lens}, {"rows", rows}};
}

TEST(GpuReference, Bf16OnGpuMatchesFp32OnCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  nlohmann::json runs = nlohmann::json::array();
  for (const char* name : {"qwen3_moe_tiny", "qwen3_moe_tiny_mixed", "deepseek_v3_tiny", "deepseek_v3_tiny_noq",
                           "deepseek_v3_tiny_fp8"}) {
    const auto dir = test::fixture_dir(name);
    ModelConfig config = load_model_config(dir);
    config.name = name;
    SafetensorsFile expected(join_path(dir, "expected.safetensors"));
    torch::Tensor lens = expected.read("seq_lens", torch::kInt64);
    runs.push_back(compare_devices(config, dir, expected.read("input_ids", torch::kInt64),
                                   std::vector<int64_t>(lens.data_ptr<int64_t>(), lens.data_ptr<int64_t>() + lens.numel())));
  }
  // The tiny presets on longer sequences (random weights).
  for (const char* preset : {"tiny-qwen3-moe", "tiny-deepseek-v3"}) {
    ModelConfig config = *find_preset(preset);
    std::vector<int64_t> lens = {301, 7, 129};
    torch::Tensor ids = torch::randint(config.vocab, {437}, torch::TensorOptions().dtype(torch::kInt64));
    runs.push_back(compare_devices(config, "", ids, lens));
  }
  if (const char* out = std::getenv("LB_RESULTS_DIR")) {
    nlohmann::json record = run_record("test:GpuReference.Bf16OnGpuMatchesFp32OnCpu",
                                       {"ctest", "-R", "GpuReference"}, device_name(torch::Device("cuda")));
    record["threshold"] = {{"min_cosine", kMinCosine}};
    record["runs"] = runs;
    write_json(std::string(out) + "/reference_bf16_gpu_vs_f32_cpu.json", record);
  }
}

}  // namespace
}  // namespace lb
