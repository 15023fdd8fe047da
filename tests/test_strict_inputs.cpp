// Nothing silently wrong: every flag and input the new-user review found accepted (issue 26, Why
// 3-6) is refused before any compute with one message naming it (exit 2), and the runs whose
// outputs are not finite fail naming the first such layer (exit 1).
#include "harness/model/safetensors.h"
#include "harness/runtime/cpu_ranks.h"
#include "harness/runtime/errors.h"
#include "reports/run_diff.h"
#include "reports/run_record.h"
#include "subprocess.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace lb {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

nlohmann::json read_json_file(const std::string& path) { return nlohmann::json::parse(test::read_file_text(path)); }

// Exit 2, nothing run (no output), one line naming every needle.
void expect_refused(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  SCOPED_TRACE(testing::PrintToString(args));
  const test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_EQ(r.out, "") << "something ran before the refusal";
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const std::string& n : needles) EXPECT_TRUE(contains(r.err, n)) << "'" << n << "' not in: " << r.err;
}

std::vector<std::string> check(std::vector<std::string> extra) {
  std::vector<std::string> args = {"check", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu",
                                   "--ranks", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> reference(std::vector<std::string> extra) {
  std::vector<std::string> args = {"reference", "--model", "tiny-qwen3-moe"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// ---- Why 3: silently wrong or empty successes ----

TEST(StrictInputs, AnEmptyLayoutListIsRefused) {
  expect_refused({"check", "--model", "tiny-qwen3-moe", "--layout", "", "--backend", "cpu", "--ranks", "2"},
                 {"--layout", "no layout named"});
  expect_refused({"check", "--model", "tiny-qwen3-moe", "--layout", ",", "--backend", "cpu", "--ranks", "2"},
                 {"--layout"});
}

TEST(StrictInputs, CountsMustBePositive) {
  for (const char* flag : {"--tokens", "--layers", "--timeout", "--ranks"})
    for (const char* value : {"0", "-3", "0x10", "1e3", "2.5"}) expect_refused(check({flag, value}), {flag, value});
  expect_refused(reference({"--tokens", "0"}), {"--tokens"});
  expect_refused(reference({"--repeats", "0"}), {"--repeats"});
  expect_refused(reference({"--layers", "0"}), {"--layers"});
}

TEST(StrictInputs, ThresholdsMustBeFiniteAndPositive) {
  for (const char* value : {"nan", "inf", "0", "-1e-5", "x"})
    expect_refused(check({"--max-rel-l2", value}), {"--max-rel-l2", value});
  const std::string old_run = test::fixture_dir("reports/check_old.json");
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--max-slowdown", "nan"}, {"--max-slowdown", "-0.1"}, {"--max-rel-l2-growth", "nan"},
           {"--max-rel-l2-growth", "inf"}, {"--max-rel-l2-growth", "0.5"}, {"--max-busbw-drop", "nan"},
           {"--rel-l2-floor", "-1"}})
    expect_refused({"diff", old_run, old_run, flag, value}, {flag, value});
}

TEST(StrictInputs, SeedsNeitherWrapNorSaturate) {
  for (const char* value : {"-1", "18446744073709551616", "99999999999999999999", "1.5", "0x10"})
    expect_refused(reference({"--seed", value}), {"--seed", value});
  // The largest seed is a seed.
  const test::CliResult r = test::run_cli(reference({"--tokens", "4", "--seed", "18446744073709551615"}));
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(StrictInputs, PositionsPastTheModelAreRefused) {
  // tiny-qwen3-moe has max_position_embeddings 4096.
  expect_refused(reference({"--tokens", "4097"}), {"--tokens", "4097", "max_position_embeddings 4096"});
  expect_refused(reference({"--lengths", "5,4100"}), {"--lengths", "sequence 1", "4100"});
  expect_refused(check({"--tokens", "5000"}), {"--tokens", "max_position_embeddings"});
}

TEST(StrictInputs, DiffRefusesDifferentInputsUnlessAllowed) {
  test::TempDir dir;
  const nlohmann::json base = read_json_file(test::fixture_dir("reports/check_old.json"));
  write_json(dir / "old.json", base);
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"seq_lens", {128}}, {"seed", 7}, {"ranks", 4}}) {
    nlohmann::json other = base;
    other[key] = value;
    if (key == "seed") {
      nlohmann::json with_seed = base;
      with_seed["seed"] = 0;
      write_json(dir / "old.json", with_seed);
    }
    write_json(dir / "new.json", other);
    expect_refused({"diff", dir / "old.json", dir / "new.json"}, {"different inputs", key});
    const test::CliResult allowed =
        test::run_cli({"diff", dir / "old.json", dir / "new.json", "--allow-different-inputs"});
    EXPECT_EQ(allowed.code, 0) << allowed.out << allowed.err;
    EXPECT_TRUE(contains(allowed.out, "inputs differ: " + key)) << allowed.out;
  }
  nlohmann::json other = base;
  other["layouts"][0]["parallel"]["attn_cp"] = 2;
  write_json(dir / "old.json", base);
  write_json(dir / "new.json", other);
  expect_refused({"diff", dir / "old.json", dir / "new.json"}, {"different inputs", "layout tp parallel"});
}

// One checkpoint at two paths is one model; its record names it by content, not by path.
TEST(StrictInputs, DiffComparesModelsByContent) {
  test::TempDir dir;
  const std::string a = dir / "a", b = dir / "b";
  for (const std::string& d : {a, b}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
    for (const char* f : {"config.json", "model.safetensors"})
      copy_file(join_path(test::fixture_dir("qwen3_moe_tiny"), f), join_path(d, f));
  }
  for (const std::string& d : {a, b}) {
    const test::CliResult r = test::run_cli({"reference", "--model", d, "--tokens", "8", "--json", d + ".json"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const test::CliResult same = test::run_cli({"diff", a + ".json", b + ".json", "--max-slowdown", "1000"});
  EXPECT_EQ(same.code, 0) << same.out << same.err;
  // Another weight in the second copy: the same shapes, other numbers.
  {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    {
      SafetensorsFile f(join_path(b, "model.safetensors"));
      for (const auto& [name, info] : f.tensors()) {
        torch::Tensor t = f.read(name, torch::kFloat32);
        tensors.push_back({name, name == "model.norm.weight" ? t * 2 : t});
      }
    }
    write_safetensors(join_path(b, "model.safetensors"), tensors);
  }
  ASSERT_EQ(test::run_cli({"reference", "--model", b, "--tokens", "8", "--json", b + ".json"}).code, 0);
  expect_refused({"diff", a + ".json", b + ".json"}, {"different models", "weights differ"});
}

// ---- non-finite outputs ----

// A copy of the committed tiny Qwen3-MoE checkpoint with one weight of layer 1 made NaN.
struct NanCheckpoint : test::TempDir {
  NanCheckpoint() {
    const std::string src = test::fixture_dir("qwen3_moe_tiny");
    copy_file(join_path(src, "config.json"), *this / "config.json");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    SafetensorsFile f(join_path(src, "model.safetensors"));
    for (const auto& [name, info] : f.tensors()) {
      torch::Tensor t = f.read(name, torch::kFloat32);
      if (name == "model.layers.1.post_attention_layernorm.weight") t = torch::full_like(t, NAN);
      tensors.push_back({name, t});
    }
    write_safetensors(*this / "model.safetensors", tensors);
  }
};

TEST(NonFiniteOutputs, ReferenceFailsNamingTheFirstLayer) {
  NanCheckpoint c;
  const test::CliResult r = test::run_cli({"reference", "--model", c.path, "--tokens", "8", "--json", c / "r.json"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.err, "layer 1's output holds NaN or inf")) << r.err;
  EXPECT_TRUE(contains(read_json_file(c / "r.json").value("error", ""), "layer 1")) << test::read_file_text(c / "r.json");
}

TEST(NonFiniteOutputs, CheckFailsNamingTheFirstLayerOfTheReference) {
  NanCheckpoint c;
  const test::CliResult r = test::run_cli({"check", "--model", c.path, "--layout", "tp", "--backend", "cpu",
                                           "--ranks", "1", "--json", c / "r.json"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.err, "the reference: layer 1's output holds NaN or inf")) << r.err;
}

// ---- Why 4: malformed checkpoints ----

// The committed checkpoint with one float weight relabelled as an integer dtype of the same size.
TEST(MalformedCheckpoints, AnIntegerDtypeOnAFloatWeightIsRefused) {
  test::TempDir dir;
  const std::string src = test::fixture_dir("qwen3_moe_tiny");
  copy_file(join_path(src, "config.json"), dir / "config.json");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  {
    SafetensorsFile f(join_path(src, "model.safetensors"));
    for (const auto& [name, info] : f.tensors()) tensors.push_back({name, f.read(name, torch::kFloat32)});
  }
  const std::string name = "model.layers.0.mlp.gate.weight";
  write_safetensors(dir / "model.safetensors", tensors, {}, {{name, StDtype::I32}});
  expect_refused({"reference", "--model", dir.path}, {name, "I32", "floating point"});
}

TEST(MalformedCheckpoints, OverlappingTensorsAreRefused) {
  test::TempDir dir;
  const std::string src = test::fixture_dir("qwen3_moe_tiny");
  copy_file(join_path(src, "config.json"), dir / "config.json");
  // The same header with one norm weight pointed at another's bytes (same size): the data section
  // is unchanged, so every other offset stays valid.
  const std::string bytes = test::read_file_text(join_path(src, "model.safetensors"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, header_len));
  header["model.layers.1.input_layernorm.weight"]["data_offsets"] =
      header["model.layers.0.input_layernorm.weight"]["data_offsets"];
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t new_len = text.size();
  std::string out(reinterpret_cast<const char*>(&new_len), 8);
  test::write_file_text(dir / "model.safetensors", out + text + bytes.substr(8 + header_len));
  expect_refused({"reference", "--model", dir.path},
                 {"model.layers.1.input_layernorm.weight", "model.layers.0.input_layernorm.weight", "overlaps"});
}

// ---- Why 5: resource blow-ups ----

TEST(ResourceLimits, HugeTokenCountsAreRefusedAtOnce) {
  const auto start = std::chrono::steady_clock::now();
  expect_refused(reference({"--tokens", "1000000000000"}), {"--tokens", "max_position_embeddings"});
  // 48 sequences of 40960 tokens of Qwen3-30B-A3B: over 1.5 TB of layer outputs and logits.
  std::string lengths = "40960";
  for (int i = 1; i < 48; ++i) lengths += ",40960";
  expect_refused({"reference", "--model", "qwen3-30b-a3b", "--lengths", lengths}, {"--lengths", "GiB", "at least"});
  expect_refused({"reference", "--model", "tiny-qwen3-moe", "--lengths", "9223372036854775807,9223372036854775807"},
                 {"--lengths"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30);
}

// A record with a huge layer index: the chart's ticks stay bounded (an int step overflowed and the
// page grew without end).
TEST(ResourceLimits, ReportOfAHugeLayerIndexStaysSmall) {
  test::TempDir dir;
  nlohmann::json run = read_json_file(test::fixture_dir("reports/check_new.json"));
  run["layouts"][0]["layers"][0]["layer"] = 1e15;
  write_json(dir / "huge.json", run);
  const test::CliResult r = test::run_cli({"report", dir / "huge.json", "-o", dir / "r.html"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LT(test::read_file_text(dir / "r.html").size(), 2000000u);
}

// ---- Why 6: unclear errors ----

TEST(ClearErrors, UnsupportedDtypesAreNamed) {
  expect_refused(check({"--dtype", "f64"}), {"--dtype", "f64", "ranks exchange"});
  expect_refused(reference({"--dtype", "int4"}), {"--dtype", "int4"});
  if (!torch::cuda::is_available()) {
    expect_refused(reference({"--dtype", "f16"}), {"--dtype", "f16", "CPU"});
    expect_refused(check({"--dtype", "f16"}), {"--dtype", "f16", "CPU"});
  }
}

TEST(ClearErrors, ADirectoryWhereAFileIsExpected) {
  test::TempDir dir;
  expect_refused(reference({"--input", dir.path}), {"--input", "is a directory"});
  expect_refused({"report", dir.path, "-o", dir / "r.html"}, {"is a directory"});
  expect_refused({"diff", dir.path, dir.path}, {"is a directory"});
}

// LibTorch's errors carry a C++ backtrace; a rank's error is its message, and running out of
// memory says so.
TEST(ClearErrors, RankErrorsHaveNoBacktrace) {
  try {
    run_cpu_ranks(2, [](RankContext& ctx) {
      if (ctx.rank() == 1) (void)torch::empty({int64_t(1) << 62}, torch::kByte);  // 4 EiB
      ctx.world().barrier();
    });
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, "rank 1: out of memory")) << what;
    EXPECT_FALSE(contains(what, "Exception raised from")) << what;
    EXPECT_LT(std::count(what.begin(), what.end(), '\n'), 3) << what;
  }
}

TEST(ClearErrors, ReportSkipsRecordsOfAnotherSchemaVisibly) {
  test::TempDir dir;
  test::write_file_text(dir / "other.json", R"({"schema": "someone.else/3", "x": 1})");
  test::write_file_text(dir / "none.json", R"({"x": 1})");
  nlohmann::json odd = read_json_file(test::fixture_dir("reports/check_new.json"));
  odd["layouts"][0]["layers"][1]["rel_l2"] = "abc";
  write_json(dir / "odd.json", odd);
  test::CliResult r = test::run_cli({"report", dir / "other.json", dir / "none.json", dir / "odd.json", "-o",
                                     dir / "r.html"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "other.json: schema \"someone.else/3\"")) << r.err;
  EXPECT_TRUE(contains(r.err, "none.json: no \"schema\" field")) << r.err;
  EXPECT_TRUE(contains(r.err, "layouts[0].layers[1].rel_l2 is \"abc\", not a number")) << r.err;
  EXPECT_TRUE(contains(r.out, "report of 1 run(s)")) << r.out;
  r = test::run_cli({"report", dir / "other.json", "-o", dir / "r2.html"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "no run record to report")) << r.err;
  EXPECT_FALSE(is_regular_file(dir / "r2.html"));
}

}  // namespace
}  // namespace lb
