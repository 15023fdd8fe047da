// The trained tiny checkpoints (tests/fixtures/gsm8k_<family>, made by train_tiny_gsm8k.py on a GPU
// with transformers) through `layoutbench gsm8k` on CPU ranks in f32: the reference generates the
// text transformers' own greedy generation generated for the same 5-shot prompts (anchor.json), and
// a layout generates the reference's tokens. On these peaked distributions a near-tie cannot excuse
// a difference. The whole 200-question runs are records under results/gsm8k/.
#include "test_util.h"

#include "datasets/gsm8k.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

namespace lb {
namespace {

const std::string kGsm8kTest = join_path(LB_SHARED_DIR, "datasets/gsm8k/test.jsonl");

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

bool one_begins_the_other(const std::string& a, const std::string& b) {
  return a.compare(0, b.size(), b) == 0 || b.compare(0, a.size(), a) == 0;
}

class TrainedCheckpoint : public testing::TestWithParam<std::string> {};

TEST_P(TrainedCheckpoint, ReferenceFollowsTheTransformersAnchorAndALayoutTheReference) {
  if (!path_exists(kGsm8kTest)) GTEST_SKIP() << kGsm8kTest << " is absent (../shared is not beside the repo)";
  const std::string folder = join_path(LB_FIXTURE_DIR, "gsm8k_" + GetParam());
  const nlohmann::json anchor = read_json(join_path(folder, "anchor.json"));
  ASSERT_EQ(anchor["prompt"]["shots"], 5);
  test::TempDir dir;
  constexpr int kQuestions = 3;
  const test::CliResult r = test::run_cli({"gsm8k", "--model", folder, "--layout", "dp-attn-rsv", "--backend", "cpu",
                                           "--ranks", "2", "--data", kGsm8kTest, "--shots", "5", "--num-questions",
                                           std::to_string(kQuestions), "--max-new-tokens", "40", "--batch-size", "3",
                                           "--json", dir / "g.json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json record = read_json(dir / "g.json");
  EXPECT_EQ(record["accuracy_meaningful"], true) << "a checkpoint: its accuracy is reported as meaningful";
  const nlohmann::json& reference = record["runs"][0];
  const nlohmann::json& layout = record["runs"][1];
  for (int q = 0; q < kQuestions; ++q) {
    // The record keeps the stop string; the anchor's text ends before it, as the harness scores.
    const std::string ours = cut_at_stop(reference["questions"][q]["text"].get<std::string>());
    const std::string theirs = anchor["questions"][q]["text"].get<std::string>();
    EXPECT_EQ(reference["questions"][q]["line"], anchor["questions"][q]["line"]);
    // Ours stops at 40 new tokens, transformers' at 256: the shorter text begins the longer one.
    EXPECT_GT(ours.size(), 20u) << "question " << q;
    EXPECT_TRUE(one_begins_the_other(ours, theirs)) << "question " << q << ":\nours:   " << ours << "\ntheirs: " << theirs;
    EXPECT_EQ(layout["questions"][q]["text"], reference["questions"][q]["text"]) << "question " << q;
  }
  EXPECT_EQ(layout["agreement"]["identical"], kQuestions);
}

INSTANTIATE_TEST_SUITE_P(Families, TrainedCheckpoint, testing::Values("qwen3_moe", "deepseek_v3"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace lb
