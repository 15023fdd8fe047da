// Generation: the KV cache gives the logits a full forward pass gives; the sampler's choices; and
// `layoutbench gsm8k` on CPU ranks, where every layout must generate exactly the reference's
// tokens (fp32, tiny models, ../shared's tokenizer and GSM8K questions).
#include "test_util.h"

#include "harness/runtime/errors.h"
#include "harness/runtime/launch.h"
#include "harness/model/random_weights.h"
#include "layouts/generation.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

namespace lb {
namespace {

const std::string kSharedTokenizer = join_path(LB_SHARED_DIR, "tokenizers/gsm8k-bpe-4k/tokenizer.json");
const std::string kGsm8kTest = join_path(LB_SHARED_DIR, "datasets/gsm8k/test.jsonl");

double rel_l2(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// Prefill, then decode steps (every sequence advances; the cache has more slots than sequences,
// as a padded batch has): every step's logits equal the logits a full forward pass over the whole
// sequence so far gives at the same positions.
void expect_cache_matches_full_forward(const std::string& preset, bool fused) {
  ModelConfig config = load_model_config(preset);
  auto weights = open_weights(config, "", 3);
  ReferenceModel model(config, *weights, {torch::kFloat32, torch::kCPU, fused});
  torch::manual_seed(11);
  std::vector<std::vector<int64_t>> seqs = {{}, {}, {}};
  const std::vector<int64_t> prompt_lens = {13, 5, 21};
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t i = 0; i < prompt_lens[s]; ++i) seqs[s].push_back(torch::randint(config.vocab, {1}).item<int64_t>());

  KvCache cache = model.make_cache(4, 40);  // one slot more than sequences: a padded batch's dummy row
  std::vector<int64_t> prompt_ids;
  for (const auto& s : seqs) prompt_ids.insert(prompt_ids.end(), s.begin(), s.end());
  torch::Tensor cached = model.prefill(torch::tensor(prompt_ids, torch::kInt64), prompt_lens, cache);
  for (int k = 0; k < 4; ++k) {
    // The whole sequences so far, at once, without a cache.
    std::vector<int64_t> ids, lens;
    for (const auto& s : seqs) ids.insert(ids.end(), s.begin(), s.end()), lens.push_back(int64_t(s.size()));
    const ReferenceRun full = model.forward(torch::tensor(ids, torch::kInt64), lens);
    int64_t end = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      end += lens[s];
      EXPECT_LT(rel_l2(cached[int64_t(s)], full.logits[end - 1]), 1e-5) << preset << " step " << k << " sequence " << s;
    }
    const torch::Tensor next = torch::randint(config.vocab, {4}, torch::kInt64);
    for (size_t s = 0; s < seqs.size(); ++s) seqs[s].push_back(next[int64_t(s)].item<int64_t>());
    cached = model.decode(next, cache);
  }
}

TEST(KvCache, StepLogitsEqualFullForwardQwen) { expect_cache_matches_full_forward("tiny-qwen3-moe", false); }
TEST(KvCache, StepLogitsEqualFullForwardDeepSeek) { expect_cache_matches_full_forward("tiny-deepseek-v3", false); }
// The fused reference decodes MLA in the latent space (weights absorbed): the same logits.
TEST(KvCache, StepLogitsEqualFullForwardDeepSeekAbsorbed) {
  expect_cache_matches_full_forward("tiny-deepseek-v3", true);
}

TEST(Sampler, GreedyTakesTheFirstMaximum) {
  Sampler s({});
  EXPECT_EQ(s.next(torch::tensor({0.5f, 2.0f, -1.0f, 2.0f})), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  torch::manual_seed(5);
  const torch::Tensor logits = torch::randn({50});
  const int64_t best = logits.argmax().item<int64_t>();
  Sampler k1({1.0, 1, 1.0, 7});
  Sampler p0({1.0, 0, 1e-9, 7});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(k1.next(logits), best);
    EXPECT_EQ(p0.next(logits), best);
  }
}

TEST(Sampler, SeededDrawsRepeatAndFollowTheDistribution) {
  const torch::Tensor logits = torch::tensor({1.0f, 0.0f, -1.0f, 0.5f});
  Sampler a({0.7, 0, 1.0, 42}), b({0.7, 0, 1.0, 42}), c({0.7, 0, 1.0, 43});
  std::vector<int> counts(4, 0);
  bool differs = false;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const int64_t t = a.next(logits);
    EXPECT_EQ(t, b.next(logits));
    differs = differs || t != c.next(logits);
    ++counts[t];
  }
  EXPECT_TRUE(differs) << "another seed drew the same sequence";
  const torch::Tensor p = torch::softmax(logits / 0.7, 0);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(double(counts[i]) / n, p[i].item<double>(), 0.015) << "token " << i;
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingTheMass) {
  // Probabilities at temperature 1: about 0.64, 0.24, 0.09, 0.03. top_p 0.8 keeps the first two.
  const torch::Tensor logits = torch::tensor({3.0f, 2.0f, 1.0f, 0.0f});
  Sampler s({1.0, 0, 0.8, 1});
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(s.next(logits));
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1}));
}

TEST(Sampler, RejectsOptionsOutOfRange) {
  EXPECT_THROW(validate(SamplingOptions{-1.0, 0, 1.0, 0}), InputError);
  EXPECT_THROW(validate(SamplingOptions{1.0, -2, 1.0, 0}), InputError);
  EXPECT_THROW(validate(SamplingOptions{1.0, 0, 0.0, 0}), InputError);
  EXPECT_THROW(validate(SamplingOptions{1.0, 0, 1.5, 0}), InputError);
}

// A model whose best logit is always past the tokenizer's ids, then at `token`.
class PaddedVocabModel : public StepModel {
 public:
  explicit PaddedVocabModel(int64_t vocab, int64_t token) : vocab_(vocab), token_(token) {}
  void start_batch(int64_t sequences, int64_t) override { sequences_ = sequences; }
  torch::Tensor prefill(const std::vector<std::vector<int64_t>>&) override { return logits(); }
  torch::Tensor decode(const torch::Tensor&) override { return logits(); }
  torch::Device device() const override { return torch::kCPU; }
  torch::Tensor logits() const {
    torch::Tensor logits = torch::zeros({sequences_, vocab_});
    logits.select(1, vocab_ - 1).fill_(9.0);
    logits.select(1, token_).fill_(5.0);
    return logits;
  }

 private:
  int64_t vocab_, token_, sequences_ = 0;
};

TEST(Generate, ChoosesOnlyIdsTheTokenizerHas) {
#ifndef LB_HAVE_ICU
  GTEST_SKIP() << "built without ICU: no tokenizer";
#endif
  const Tokenizer tok = Tokenizer::from_file(test::fixture_dir("tokenizers/tiny-bpe/tokenizer.json"));
  PaddedVocabModel model(tok.vocab_size() + 50, 7);
  GenerationOptions options;
  options.max_new_tokens = 3;
  options.vocab_limit = tok.vocab_size();
  const auto out = generate(model, tok, {{1, 2}, {3}}, options, 100);
  for (const Generation& g : out) {
    EXPECT_EQ(g.tokens, (std::vector<int64_t>{7, 7, 7}));
    EXPECT_EQ(g.finish, "length");
  }
}

// ---- `layoutbench gsm8k` on CPU ranks ----

bool have_shared() { return path_exists(kSharedTokenizer) && path_exists(kGsm8kTest); }

nlohmann::json read_record(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

struct Gsm8kCase {
  std::string model;
  int ranks;
  std::vector<std::string> sampling = {};  // empty: greedy
};

class EveryLayoutGeneratesTheReferenceTokens : public testing::TestWithParam<Gsm8kCase> {};

TEST_P(EveryLayoutGeneratesTheReferenceTokens, On20Questions) {
  if (!have_shared()) GTEST_SKIP() << kSharedTokenizer << " or " << kGsm8kTest << " is absent (../shared is not beside the repo)";
  const Gsm8kCase& c = GetParam();
  test::TempDir dir;
  // Batches of 8 (the last one smaller); several sequences end before the token limit in some runs.
  std::vector<std::string> args = {"gsm8k", "--model", c.model, "--layout", "all", "--backend", "cpu",
                                   "--ranks", std::to_string(c.ranks), "--data", kGsm8kTest, "--tokenizer",
                                   kSharedTokenizer, "--num-questions", "20", "--shots", "2",
                                   "--max-new-tokens", "12", "--batch-size", "8", "--json", dir / "g.json"};
  args.insert(args.end(), c.sampling.begin(), c.sampling.end());
  const test::CliResult r = test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::cout << r.out;
  const nlohmann::json record = read_record(dir / "g.json");
  ASSERT_EQ(record["runs"].size(), all_layouts().size() + 1);
  EXPECT_EQ(record["accuracy_meaningful"], false);
  const nlohmann::json& reference = record["runs"][0];
  EXPECT_EQ(reference["name"], "reference");
  EXPECT_EQ(reference["questions"].size(), 20u);
  for (size_t i = 1; i < record["runs"].size(); ++i) {
    const nlohmann::json& run = record["runs"][i];
    EXPECT_EQ(run["agreement"]["identical"], 20) << run["name"];
    for (size_t q = 0; q < 20; ++q) EXPECT_EQ(run["questions"][q]["text"], reference["questions"][q]["text"]);
    EXPECT_GT(run["decode_tokens_per_s"].get<double>(), 0) << run["name"];
  }
  if (c.sampling.empty()) return;
  // Sampled: the draws really are draws (some question's text differs from the greedy run's), and
  // every rank of every layout drew the same tokens as the reference (question i with seed + i).
  test::TempDir greedy_dir;
  std::vector<std::string> greedy = {"gsm8k", "--model", c.model, "--layout", "none", "--backend", "cpu", "--ranks",
                                     "1", "--data", kGsm8kTest, "--tokenizer", kSharedTokenizer, "--num-questions",
                                     "20", "--shots", "2", "--max-new-tokens", "12", "--batch-size", "8", "--json",
                                     greedy_dir / "g.json"};
  ASSERT_EQ(test::run_cli(greedy).code, 0);
  const nlohmann::json greedy_record = read_record(greedy_dir / "g.json");
  int differ = 0;
  for (size_t q = 0; q < 20; ++q)
    differ += greedy_record["runs"][0]["questions"][q]["text"] != reference["questions"][q]["text"];
  EXPECT_GT(differ, 0) << "temperature sampling gave the greedy tokens on every question";
}

INSTANTIATE_TEST_SUITE_P(CpuRanks, EveryLayoutGeneratesTheReferenceTokens,
                         testing::Values(Gsm8kCase{"tiny-qwen3-moe", 4}, Gsm8kCase{"tiny-qwen3-moe", 2},
                                         Gsm8kCase{"tiny-deepseek-v3", 4},
                                         Gsm8kCase{"tiny-qwen3-moe", 2,
                                                   {"--temperature", "0.8", "--top-k", "20", "--top-p", "0.95",
                                                    "--sampling-seed", "7"}},
                                         Gsm8kCase{"tiny-deepseek-v3", 2,
                                                   {"--temperature", "1.2", "--top-k", "0", "--top-p", "0.9",
                                                    "--sampling-seed", "3"}}),
                         [](const testing::TestParamInfo<Gsm8kCase>& info) {
                           return test::param_name(info.index, info.param.model + "_" + std::to_string(info.param.ranks) +
                                                                   (info.param.sampling.empty() ? "" : "_sampled"));
                         });

// Bad inputs end the run with one message naming the problem, before any model work.
// On one rank a layout's head takes its rows as they are (no copy, no gather) and the last layer's
// two terms (h and m) straight into the final norm: its tokens must still be the reference's.
TEST(Generate, OneRankLayoutsGenerateTheReferenceTokens) {
  if (!have_shared()) GTEST_SKIP() << kSharedTokenizer << " or " << kGsm8kTest << " is absent (../shared is not beside the repo)";
  test::TempDir dir;
  const test::CliResult r =
      test::run_cli({"gsm8k", "--model", "tiny-qwen3-moe", "--layout", "tp,dp-attn-rsv", "--backend", "cpu", "--ranks",
                     "1", "--data", kGsm8kTest, "--tokenizer", kSharedTokenizer, "--num-questions", "6", "--shots", "1",
                     "--max-new-tokens", "8", "--batch-size", "4", "--json", dir / "g.json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json record = read_record(dir / "g.json");
  ASSERT_EQ(record["runs"].size(), 3u);
  for (size_t i = 1; i < record["runs"].size(); ++i)
    EXPECT_EQ(record["runs"][i]["agreement"]["identical"], 6) << record["runs"][i]["name"];
}

TEST(Gsm8kCli, BadInputsAreNamed) {
  const std::string tok = test::fixture_dir("tokenizers/tiny-bpe/tokenizer.json");
  auto run = [&](const std::string& data, std::vector<std::string> extra = {"--max-new-tokens", "4"}) {
    std::vector<std::string> args = {"gsm8k", "--model", "tiny-qwen3-moe", "--layout", "none", "--backend", "cpu",
                                     "--ranks", "1", "--data", data, "--tokenizer", tok, "--shots", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_cli(args);
  };
  const std::string fx = test::fixture_dir("gsm8k");
  const test::CliResult empty = run(join_path(fx, "empty.jsonl"));
  EXPECT_EQ(empty.code, 2);
  EXPECT_NE(empty.err.find("empty.jsonl"), std::string::npos) << empty.err;
  const test::CliResult malformed = run(join_path(fx, "malformed_json.jsonl"));
  EXPECT_EQ(malformed.code, 2);
  EXPECT_NE(malformed.err.find("malformed_json.jsonl:"), std::string::npos) << malformed.err;
  const test::CliResult hashes = run(join_path(fx, "missing_hashes.jsonl"));
  EXPECT_EQ(hashes.code, 2);
  EXPECT_NE(hashes.err.find("####"), std::string::npos) << hashes.err;
  const test::CliResult no_tokenizer =
      test::run_cli({"gsm8k", "--model", "tiny-qwen3-moe", "--backend", "cpu", "--ranks", "1", "--data",
                     join_path(fx, "good.jsonl")});
  EXPECT_EQ(no_tokenizer.code, 2);
  EXPECT_NE(no_tokenizer.err.find("--tokenizer"), std::string::npos) << no_tokenizer.err;
  const test::CliResult too_long = run(join_path(fx, "good.jsonl"), {"--max-new-tokens", "5000"});
  EXPECT_EQ(too_long.code, 2);
  EXPECT_NE(too_long.err.find("max-new-tokens"), std::string::npos) << too_long.err;
  const test::CliResult sampling = run(join_path(fx, "good.jsonl"), {"--top-p", "0", "--temperature", "1"});
  EXPECT_EQ(sampling.code, 2);
  EXPECT_NE(sampling.err.find("--top-p"), std::string::npos) << sampling.err;
  // A checkpoint directory: its tokenizer.json by default, and a tokenizer with more ids than the
  // model has rows is refused (random weights grow to fit; a checkpoint cannot).
  const std::string ckpt = test::fixture_dir("qwen3_moe_tiny");
  auto run_ckpt = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"gsm8k", "--model", ckpt, "--layout", "none", "--backend", "cpu", "--ranks", "1",
                                     "--data", join_path(fx, "good.jsonl"), "--shots", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_cli(args);
  };
  const test::CliResult no_file = run_ckpt({});
  EXPECT_EQ(no_file.code, 2);
  EXPECT_NE(no_file.err.find(join_path(ckpt, "tokenizer.json")), std::string::npos) << no_file.err;
  const test::CliResult too_many = run_ckpt({"--tokenizer", tok});
  EXPECT_EQ(too_many.code, 2);
  EXPECT_NE(too_many.err.find("vocab_size is 97"), std::string::npos) << too_many.err;
}

// A damaged file with --skip-bad-lines: the good questions run, and the record lists every line
// left out, so nothing is lost silently.
TEST(Gsm8kCli, SkippedLinesAreRecorded) {
  test::TempDir dir;
  const test::CliResult r = test::run_cli(
      {"gsm8k", "--model", "tiny-qwen3-moe", "--layout", "tp", "--backend", "cpu", "--ranks", "2", "--data",
       test::fixture_dir("gsm8k/damaged.jsonl"), "--tokenizer", test::fixture_dir("tokenizers/tiny-bpe/tokenizer.json"),
       "--shots", "0", "--max-new-tokens", "4", "--skip-bad-lines", "--json", dir / "g.json"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const nlohmann::json record = read_record(dir / "g.json");
  EXPECT_EQ(record["skipped_lines"].size(), 5u) << record["skipped_lines"].dump();
  ASSERT_EQ(record["runs"].size(), 2u);
  EXPECT_EQ(record["runs"][0]["questions"].size(), 3u);
  EXPECT_EQ(record["runs"][1]["agreement"]["identical"], 3);
}

}  // namespace
}  // namespace lb
