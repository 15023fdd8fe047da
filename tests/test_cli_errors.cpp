// Bad input at the command line: each case exits non-zero with one clear message that names the
// file, tensor, key or flag at fault, before any compute.
#include "harness/model/safetensors.h"
#include "test_util.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace lb {
namespace {

// A copy of a committed transformers fixture checkpoint that a test may break.
struct BrokenCheckpoint : test::TempDir {
  BrokenCheckpoint() {
    const std::string src = test::fixture_dir("qwen3_moe_tiny");
    copy_file(join_path(src, "config.json"), *this / "config.json");
    copy_file(join_path(src, "model.safetensors"), *this / "model.safetensors");
  }
  std::string dir() const { return path; }
  std::string weights() const { return *this / "model.safetensors"; }
};

void expect_error(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 2) << r.err;
  for (const auto& needle : needles) EXPECT_NE(r.err.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.err;
  // One message, not a stack of them.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Rewrites the checkpoint with one tensor replaced.
void replace_tensor(const std::string& file, const std::string& name, const torch::Tensor& value) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  {
    SafetensorsFile f(file);
    for (const auto& [n, info] : f.tensors()) tensors.push_back({n, n == name ? value : f.read(n, torch::kFloat32)});
  }
  write_safetensors(file, tensors);
}

TEST(CliErrors, MissingWeightsFile) {
  BrokenCheckpoint c;
  std::remove(c.weights().c_str());
  expect_error({"reference", "--model", c.dir()}, {c.dir(), "model.safetensors"});
}

TEST(CliErrors, TruncatedHeader) {
  BrokenCheckpoint c;
  write_all(c.weights(), read_all(c.weights()).substr(0, 100));
  expect_error({"reference", "--model", c.dir()}, {"model.safetensors"});
}

TEST(CliErrors, TruncatedData) {
  BrokenCheckpoint c;
  std::string bytes = read_all(c.weights());
  write_all(c.weights(), bytes.substr(0, bytes.size() - 16));
  expect_error({"reference", "--model", c.dir()}, {"model.safetensors", "model.", "trunc"});
}

TEST(CliErrors, MalformedHeaderJson) {
  BrokenCheckpoint c;
  std::string bytes = read_all(c.weights());
  bytes.replace(8, 6, "{oops:");  // the header's first bytes
  write_all(c.weights(), bytes);
  expect_error({"reference", "--model", c.dir()}, {"model.safetensors"});
}

TEST(CliErrors, TensorWithWrongShape) {
  BrokenCheckpoint c;
  replace_tensor(c.weights(), "model.layers.1.self_attn.k_proj.weight", torch::randn({11, 40}));
  expect_error({"reference", "--model", c.dir()}, {"model.layers.1.self_attn.k_proj.weight", "[11, 40]"});
}

TEST(CliErrors, UnknownDtype) {
  BrokenCheckpoint c;
  std::string bytes = read_all(c.weights());
  const std::string name = "\"model.norm.weight\"";
  size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  size_t dtype = bytes.find("\"F32\"", at);
  bytes.replace(dtype, 5, "\"Q4K\"");  // same length keeps the header length valid
  write_all(c.weights(), bytes);
  expect_error({"reference", "--model", c.dir()}, {"model.norm.weight", "Q4K"});
}

TEST(CliErrors, ConfigWithoutRequiredKey) {
  BrokenCheckpoint c;
  nlohmann::json config = nlohmann::json::parse(read_all(c.dir() + "/config.json"));
  config.erase("num_attention_heads");
  write_all(c.dir() + "/config.json", config.dump());
  expect_error({"reference", "--model", c.dir()}, {"config.json", "num_attention_heads"});
}

TEST(CliErrors, UnknownPreset) {
  expect_error({"reference", "--model", "qwen9-tiny"}, {"qwen9-tiny", "presets"});
}

TEST(CliErrors, CudaWithoutGpu) {
  if (torch::cuda::is_available()) {
    expect_error({"reference", "--model", "tiny-qwen3-moe", "--device", "cuda:99"}, {"--device", "cuda:99"});
    return;
  }
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--device", "cuda"}, {"--device", "CUDA"});
}

TEST(CliErrors, BadFlags) {
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--layers", "9"}, {"--layers", "4 layers"});
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--lengths", "3,x,4"}, {"--lengths", "'x'"});
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--dtype", "int4"}, {"--dtype", "int4"});
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--input", "/nonexistent/ids.json"}, {"/nonexistent/ids.json"});
  test::TempDir t;
  write_all(t / "ids.json", "[[1, 2, 3], [4, 999999]]");
  expect_error({"reference", "--model", "tiny-qwen3-moe", "--input", t / "ids.json"}, {"ids.json", "999999"});
}

TEST(CliErrors, GoodRunSucceedsAndDumps) {
  test::TempDir t;
  test::CliResult r = test::run_cli({"reference", "--model", "tiny-deepseek-v3", "--lengths", "9,4", "--dump",
                                     t / "dump.safetensors", "--json", t / "run.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  SafetensorsFile dump(t / "dump.safetensors");
  EXPECT_EQ(dump.info("layers.3.output").shape, (std::vector<int64_t>{13, 64}));
  EXPECT_EQ(dump.info("logits").shape, (std::vector<int64_t>{13, 199}));
  nlohmann::json record = nlohmann::json::parse(read_all(t / "run.json"));
  EXPECT_EQ(record["schema"], "layoutbench.run/1");
  EXPECT_GT(record["metrics"]["prefill_tokens_per_s"].get<double>(), 0);
}

}  // namespace
}  // namespace lb
