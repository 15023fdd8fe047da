// Fuzzing every parser a user's file reaches: the safetensors header, the checkpoint index, the
// model config, tokenizer.json and the run-record readers (report, diff). Thousands of seeded
// mutations of valid inputs per target: no crash, no hang (a watchdog aborts naming the input when
// one takes over 10 s), and every rejection an InputError. Each target stops after its iterations
// or 20 s, so the whole suite stays well under two minutes on a loaded CI machine; a failure
// prints the seed and iteration that reproduce it (LB_FUZZ_SEED picks another base seed).
#include "datasets/tokenizer.h"
#include "fuzz_mutator.h"
#include "harness/model/checkpoint.h"
#include "harness/model/model_config.h"
#include "harness/model/model_tensors.h"
#include "harness/model/safetensors.h"
#include "harness/runtime/errors.h"
#include "reports/record_lint.h"
#include "reports/report_html.h"
#include "reports/run_diff.h"
#include "reports/run_record.h"
#include "subprocess.h"
#include "test_util.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t base_seed() {
  const char* env = std::getenv("LB_FUZZ_SEED");
  return env && *env ? std::strtoull(env, nullptr, 10) : 20260426;
}

// Aborts the process, naming the input, when one input takes longer than the limit: a hang.
class HangWatch {
 public:
  explicit HangWatch(const std::string& target) : target_(target), thread_([this] { watch(); }) {}
  ~HangWatch() {
    done_ = true;
    thread_.join();
  }
  void starting(uint64_t seed, int iteration) {
    seed_ = seed, iteration_ = iteration;
    started_ = Clock::now().time_since_epoch().count();
  }

 private:
  void watch() {
    while (!done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto started = Clock::time_point(Clock::duration(started_.load()));
      if (started_.load() != 0 && Clock::now() - started > std::chrono::seconds(10)) {
        std::fprintf(stderr, "fuzz %s: input seed %llu iteration %d runs over 10 s (a hang)\n", target_.c_str(),
                     static_cast<unsigned long long>(seed_.load()), iteration_.load());
        std::abort();
      }
    }
  }
  std::string target_;
  std::atomic<bool> done_{false};
  std::atomic<int64_t> started_{0};
  std::atomic<uint64_t> seed_{0};
  std::atomic<int> iteration_{0};
  std::thread thread_;
};

// Runs one(mutator) on `iterations` mutated inputs (or for 20 s); an exception other than
// InputError is a failure naming the input.
template <typename F>
void fuzz(const std::string& target, int iterations, F&& one) {
  const uint64_t seed = base_seed();
  HangWatch watch(target);
  const auto stop = Clock::now() + std::chrono::seconds(20);
  int done = 0, rejected = 0, failed = 0;
  for (int i = 0; i < iterations && Clock::now() < stop && failed < 10; ++i, ++done) {
    watch.starting(seed, i);
    test::Mutator m(seed * 1000003 + uint64_t(i));
    try {
      one(m);
    } catch (const InputError&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << target << ": seed " << seed << " iteration " << i << " threw a non-InputError: " << e.what();
      ++failed;
    }
  }
  std::cout << target << ": " << done << " inputs, " << rejected << " rejected with an InputError\n";
  if (failed == 0) EXPECT_GE(done, 500) << "too few inputs in the time budget";
}

// A file header: 8 bytes of length, then the JSON.
std::string with_header(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

TEST(Fuzz, SafetensorsHeader) {
  test::TempDir dir;
  const std::string seed_file = dir / "seed.safetensors";
  write_safetensors(seed_file,
                    {{"f32", torch::randn({3, 4})}, {"bf16", torch::randn({5}).to(torch::kBFloat16)},
                     {"f16", torch::randn({2, 2}).to(torch::kHalf)}, {"fp8", encode_f8_e4m3(torch::randn({4}))},
                     {"i64", torch::arange(6)}, {"flag", torch::tensor({true, false})}, {"empty", torch::zeros({0, 3})}},
                    {{"format", "pt"}}, {{"fp8", StDtype::F8_E4M3}});
  const std::string bytes = test::read_file_text(seed_file);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, header_len));
  const std::string data = bytes.substr(8 + header_len);
  const std::string path = dir / "fuzz.safetensors";
  fuzz("safetensors header", 5000, [&](test::Mutator& m) {
    test::write_file_text(path, m.below(2) ? m.bytes(bytes) : with_header(m.text(m.json(header)), data));
    SafetensorsFile file(path);
    for (const auto& [name, info] : file.tensors()) {
      (void)file.read(name, torch::kFloat32);
      if (!info.shape.empty() && info.shape[0] > 0) (void)file.read(name, torch::kFloat32, Slice{0, 0, 1});
    }
  });
}

TEST(Fuzz, CheckpointIndex) {
  test::TempDir dir;
  write_safetensors(dir / "a.safetensors", {{"w1", torch::randn({2, 3})}, {"w2", torch::randn({4})}});
  write_safetensors(dir / "b.safetensors", {{"w3", torch::randn({3})}});
  const nlohmann::json index = {{"metadata", {{"total_size", 48}}},
                                {"weight_map", {{"w1", "a.safetensors"}, {"w2", "a.safetensors"}, {"w3", "b.safetensors"}}}};
  const std::string path = dir / "model.safetensors.index.json";
  fuzz("checkpoint index", 3000, [&](test::Mutator& m) {
    test::write_file_text(path, m.below(2) ? m.bytes(index.dump()) : m.text(m.json(index)));
    Checkpoint checkpoint(dir.path);
    for (const std::string& name : checkpoint.names()) {
      (void)checkpoint.info(name);
      (void)checkpoint.read(name, torch::kFloat32);
    }
  });
}

TEST(Fuzz, ModelConfig) {
  test::TempDir dir;
  std::vector<std::string> seeds;
  for (const char* fixture : {"qwen3_moe_tiny", "deepseek_v3_tiny", "deepseek_v3_tiny_fp8"})
    seeds.push_back(test::read_file_text(join_path(test::fixture_dir(fixture), "config.json")));
  fuzz("model config", 5000, [&](test::Mutator& m) {
    const std::string& seed = seeds[m.below(seeds.size())];
    test::write_file_text(dir / "config.json",
                          m.below(2) ? m.bytes(seed) : m.text(m.json(nlohmann::json::parse(seed))));
    const ModelConfig config = load_model_config(dir.path);
    (void)config.to_json();
    (void)model_tensors(config);
  });
}

TEST(Fuzz, TokenizerJson) {
  const std::string seed = test::read_file_text(test::fixture_dir("tokenizers/tiny-bpe/tokenizer.json"));
  try {
    Tokenizer::from_file(test::fixture_dir("tokenizers/tiny-bpe/tokenizer.json"));
  } catch (const InputError& e) {
    GTEST_SKIP() << "the tokenizer is not available in this build: " << e.what();
  }
  test::TempDir dir;
  fuzz("tokenizer.json", 3000, [&](test::Mutator& m) {
    test::write_file_text(dir / "tokenizer.json",
                          m.below(2) ? m.bytes(seed) : m.text(m.json(nlohmann::json::parse(seed))));
    const Tokenizer tokenizer = Tokenizer::from_file(dir / "tokenizer.json");
    const std::vector<int64_t> ids = tokenizer.encode("Natalia sold 48 clips, then 24. <|endoftext|> \xc3\xa9");
    (void)tokenizer.decode(ids);
    (void)tokenizer.eos_id();
  });
}

TEST(Fuzz, RunRecords) {
  std::vector<nlohmann::json> seeds;
  for (const char* fixture : {"check_new.json", "check_old.json", "collectives.json", "reference.json"})
    seeds.push_back(nlohmann::json::parse(test::read_file_text(test::fixture_dir(std::string("reports/") + fixture))));
  test::TempDir dir;
  fuzz("run records", 4000, [&](test::Mutator& m) {
    const nlohmann::json& seed = seeds[m.below(seeds.size())];
    test::write_file_text(dir / "run.json", m.below(4) == 0 ? m.bytes(seed.dump()) : m.text(m.json(seed)));
    const nlohmann::json run = read_run_file(dir / "run.json");
    (void)schema_problem(run);
    (void)record_warnings(run);
    (void)render_report_html({run});
    for (const auto& [a, b] : {std::pair<const nlohmann::json*, const nlohmann::json*>{&run, &seed}, {&seed, &run}}) {
      try {
        (void)format_diff(diff_runs(*a, *b, {}, DiffInputs::MayDiffer));
      } catch (const InputError&) {
      }
    }
  });
}

}  // namespace
}  // namespace lb
