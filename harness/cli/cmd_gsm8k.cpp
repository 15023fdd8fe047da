#include "harness/cli/cmd_gsm8k.h"

#include "harness/cli/flag_checks.h"
#include "datasets/gsm8k.h"
#include "datasets/shared_files.h"
#include "datasets/tokenizer.h"
#include "harness/runtime/device.h"
#include "kernels/fused_moe.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "harness/cli/layout_selection.h"
#include "harness/runtime/progress.h"
#include "layouts/generation.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

namespace lb {

namespace {

struct Gsm8kArgs {
  std::string model;
  std::string layout = "all";
  std::string backend;
  int ranks = 0;
  ParallelFlags parallel;
  std::string data, train, tokenizer;
  int shots = 5;
  int64_t shot_seed = -1;
  int num_questions = 200;
  int64_t max_new_tokens = 256;
  int64_t batch_size = 16;
  int64_t layers = 0;
  std::string dtype;
  std::string kernels = "reference";
  std::string reference_kernels = "reference";
  std::string cuda_graphs = "auto";
  uint64_t seed = 0;
  SamplingOptions sampling;
  bool skip_bad_lines = false;
  int timeout_s = 600;
  std::string json;
  CLI::App* sub = nullptr;
};

// One run over the questions: the reference or a layout.
struct Gsm8kRun {
  std::string name, replaces;
  std::optional<ParallelConfig> parallel;
  std::vector<Generation> outputs;
  GenerationStats stats;
};

// The first position where two generations differ, or -1 when they are the same.
int64_t first_difference(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return int64_t(i);
  return a.size() == b.size() ? -1 : int64_t(n);
}

double per_s(int64_t tokens, double ms) { return ms > 0 ? tokens / (ms / 1000) : 0; }

nlohmann::json run_json(const Gsm8kRun& run, const Gsm8kRun* reference, const std::vector<Gsm8kItem>& questions) {
  nlohmann::json items = nlohmann::json::array();
  int correct = 0, identical = 0;
  for (size_t i = 0; i < run.outputs.size(); ++i) {
    const Generation& g = run.outputs[i];
    const auto answer = extract_answer(g.text);
    const bool ok = is_correct(g.text, questions[i].answer);
    correct += ok;
    nlohmann::json item = {{"line", questions[i].line}, {"reference_answer", questions[i].answer},
                           {"answer", answer ? nlohmann::json(*answer) : nlohmann::json()}, {"correct", ok},
                           {"finish", g.finish}, {"new_tokens", g.tokens.size()}, {"text", g.text}};
    if (reference) {
      const int64_t diff = first_difference(g.tokens, reference->outputs[i].tokens);
      identical += diff < 0;
      item["first_difference"] = diff < 0 ? nlohmann::json() : nlohmann::json(diff);
    }
    items.push_back(item);
  }
  const Accuracy acc = accuracy(correct, int(run.outputs.size()));
  const GenerationStats& s = run.stats;
  nlohmann::json j = {{"name", run.name},
                      {"accuracy", {{"correct", acc.correct}, {"total", acc.total}, {"value", acc.value},
                                    {"low95", acc.low95}, {"high95", acc.high95}}},
                      {"prefill_tokens", s.prefill_tokens}, {"prefill_ms", s.prefill_ms},
                      {"prefill_tokens_per_s", per_s(s.prefill_tokens, s.prefill_ms)},
                      {"decode_tokens", s.decode_tokens}, {"decode_steps", s.decode_steps}, {"decode_ms", s.decode_ms},
                      {"decode_tokens_per_s", per_s(s.decode_tokens, s.decode_ms)},
                      {"questions", items}};
  if (run.parallel) {
    j["replaces"] = run.replaces;
    j["parallel"] = run.parallel->to_json();
    j["dealt_prefills"] = s.dealt_prefills;
  }
  if (reference) j["agreement"] = {{"identical", identical}, {"total", run.outputs.size()}};
  return j;
}

// The printed summary of a run, from its record `j` (run_json).
std::string run_line(const Gsm8kRun& run, const nlohmann::json& j) {
  const auto& a = j["accuracy"];
  std::ostringstream out;
  out << std::left << std::setw(16) << run.name << std::right << " accuracy "
      << to_string(accuracy(a["correct"].get<int>(), a["total"].get<int>())) << std::fixed << std::setprecision(1)
      << "; prefill " << j["prefill_tokens_per_s"].get<double>() << " tok/s, decode "
      << j["decode_tokens_per_s"].get<double>() << " tok/s";
  if (j.contains("agreement"))
    out << "; identical to the reference: " << j["agreement"]["identical"].get<int>() << "/" << run.outputs.size();
  if (run.stats.dealt_prefills) out << " (" << run.stats.dealt_prefills << " prefills dealt over CP ranks)";
  return out.str();
}

int run_gsm8k(const Gsm8kArgs& a, const std::vector<std::string>& argv) {
  // Every input is read and checked before any rank starts.
  ModelConfig config = load_model_config(a.model);
  keep_first_layers(config, a.layers);
  const Backend backend = parse_backend(a.backend);
  const torch::ScalarType dtype =
      parse_model_dtype(a.dtype.empty() ? default_dtype(backend) : a.dtype,
                        backend == Backend::Nccl ? torch::Device(torch::kCUDA, 0) : torch::kCPU, /*collectives=*/true);
  if (a.ranks < 1) throw InputError("--ranks/--gpus must be >= 1");
  if (a.shots < 0) throw InputError("--shots must be >= 0");
  if (a.num_questions < 0) throw InputError("--num-questions must be >= 0 (0: every question)");
  const bool checkpoint = is_directory(a.model);
  std::string tokenizer_path = a.tokenizer;
  if (tokenizer_path.empty() && checkpoint) tokenizer_path = join_path(a.model, "tokenizer.json");
  if (tokenizer_path.empty() && !config.shared_tokenizer.empty())
    tokenizer_path = shared_file(config.shared_tokenizer, "the default tokenizer of " + a.model + "; --tokenizer "
                                 "names another");
  if (tokenizer_path.empty())
    throw InputError("--tokenizer is required with preset " + a.model +
                     " (a checkpoint directory has its tokenizer.json)");
  const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
  if (tokenizer.vocab_size() > config.vocab) {
    if (checkpoint)
      throw InputError("tokenizer " + tokenizer_path + " has ids up to " + std::to_string(tokenizer.vocab_size() - 1) +
                       " but the model's vocab_size is " + std::to_string(config.vocab));
    std::cout << "random weights: vocab " << config.vocab << " raised to the tokenizer's " << tokenizer.vocab_size()
              << "\n";
    config.vocab = tokenizer.vocab_size();
  }
  const bool fused = parse_fused_kernels(a.kernels);
  const DecodeOptions decode_options{parse_cuda_graphs(a.cuda_graphs, fused, backend == Backend::Nccl)};
  const bool reference_fused = parse_fused_kernels(a.reference_kernels);
  // The plain reference decodes eagerly whatever --cuda-graphs says (it synchronizes with the host).
  const DecodeOptions reference_decode{reference_fused && parse_cuda_graphs(a.cuda_graphs, true, backend == Backend::Nccl)};
  const OnBadLine on_bad = a.skip_bad_lines ? OnBadLine::Skip : OnBadLine::Throw;
  const Gsm8kData test = load_gsm8k(a.data, on_bad);
  const std::string train_path = a.train.empty() ? join_path(parent_directory(a.data), "train.jsonl") : a.train;
  const Gsm8kData train = a.shots > 0 ? load_gsm8k(train_path, on_bad) : Gsm8kData{};
  const std::vector<Gsm8kItem> shots =
      select_shots(train.items, a.shots, a.shot_seed >= 0 ? std::optional<uint64_t>(a.shot_seed) : std::nullopt);
  std::vector<Gsm8kItem> questions = test.items;
  if (a.num_questions > 0 && size_t(a.num_questions) < questions.size()) questions.resize(a.num_questions);
  std::vector<std::vector<int64_t>> prompts;
  for (const Gsm8kItem& q : questions) prompts.push_back(tokenizer.encode(few_shot_prompt(shots, q.question)));

  GenerationOptions gen;
  gen.max_new_tokens = a.max_new_tokens;
  gen.stop = gsm8k_stop_strings();
  gen.eos = tokenizer.eos_id();
  gen.sampling = a.sampling;
  gen.batch_size = a.batch_size;
  gen.vocab_limit = tokenizer.vocab_size();
  check_generation_inputs(prompts, gen, config.max_position, [&](size_t i) {
    return "question on line " + std::to_string(questions[i].line) + " of " + a.data;
  });
  const std::vector<SelectedLayout> layouts =
      a.layout == "none" ? std::vector<SelectedLayout>{}
                         : select_layouts(a.layout, a.ranks, config, a.parallel, *a.sub);
  std::unique_ptr<WeightSource> weights = open_weights(config, checkpoint ? a.model : "", a.seed);
  const bool random_weights = !checkpoint;
  if (random_weights)
    std::cout << "note: random weights, so accuracy means nothing here; token agreement with the reference and "
                 "tokens/s do\n";

  nlohmann::json record = run_record("gsm8k", argv, "");
  record["model"] = config.to_json();
  record["weights"] = weights->describe();
  record["accuracy_meaningful"] = !random_weights;
  record["backend"] = to_string(backend);
  record["ranks"] = a.ranks;
  record["dtype"] = dtype_name(dtype);
  record["kernels"] = a.kernels;
  record["reference_kernels"] = a.reference_kernels;
  record["cuda_graphs"] = decode_options.cuda_graphs;
  record["data"] = a.data;
  record["tokenizer"] = tokenizer_path;
  record["shots"] = a.shots;
  record["max_new_tokens"] = a.max_new_tokens;
  record["batch_size"] = a.batch_size;
  record["sampling"] = {{"temperature", a.sampling.temperature}, {"top_k", a.sampling.top_k},
                        {"top_p", a.sampling.top_p}, {"seed", a.sampling.seed}};
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto* d : {&test, &train})
    for (const LoadError& e : d->skipped) skipped.push_back(e.message());
  record["skipped_lines"] = skipped;
  record["runs"] = nlohmann::json::array();
  // Written now, after every run, and with the error when one fails or a signal comes (run_ranks
  // and the signal handler pass it on), so finished runs are never lost.
  RecordFile file(a.json, record);
  auto save = [&] {
    file.update([&](nlohmann::json& r) {
      r["device"] = record["device"];
      r["runs"] = record["runs"];
    });
  };

  Gsm8kRun reference;
  std::vector<Gsm8kRun> runs;
  int64_t batches = (int64_t(prompts.size()) + gen.batch_size - 1) / gen.batch_size;
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    if (ctx.rank() == 0) {
      record["device"] = device_name(ctx.device());
      ReferenceModel model(config, *weights, {dtype, ctx.device(), reference_fused});
      ReferenceStepModel step(model, reference_decode);
      Progress progress("gsm8k: reference", batches);
      reference.name = "reference";
      reference.outputs = generate(step, tokenizer, prompts, gen, config.max_position, &reference.stats,
                                   [&](int64_t) { progress.step(); });
      progress.clear();
      record["runs"].push_back(run_json(reference, nullptr, questions));
      std::cout << run_line(reference, record["runs"].back()) << "\n" << std::flush;
      save();
    }
    ctx.quiesce();  // the reference's memory is released before any layout loads
    for (const SelectedLayout& l : layouts) {
      LayoutRank rank(ctx, *l.spec, l.parallel, config, *weights, {dtype, ctx.device(), fused}, {});
      ctx.quiesce();
      LayoutStepModel step(rank, ctx.device(), decode_options);
      std::optional<Progress> progress;
      if (ctx.rank() == 0) progress.emplace("gsm8k: " + l.spec->name, batches);
      Gsm8kRun run;
      run.outputs = generate(step, tokenizer, prompts, gen, config.max_position, &run.stats,
                             [&](int64_t) { if (progress) progress->step(); });
      ctx.quiesce();  // no collective in flight while `rank` frees its weights and communicators
      if (ctx.rank() != 0) continue;
      progress->clear();
      run.name = l.spec->name;
      run.replaces = l.spec->replaces;
      run.parallel = l.parallel;
      record["runs"].push_back(run_json(run, &reference, questions));
      std::cout << run_line(run, record["runs"].back()) << "\n" << std::flush;
      save();
      runs.push_back(std::move(run));
    }
  }, std::chrono::seconds(a.timeout_s));
  if (reference.outputs.empty()) return 0;  // not rank 0 of an mpirun launch
  file.finish();

  bool agree = true;
  for (const Gsm8kRun& r : runs)
    for (size_t i = 0; i < r.outputs.size(); ++i) agree = agree && r.outputs[i].tokens == reference.outputs[i].tokens;
  std::cout << (agree ? "every layout generated the reference's tokens" : "some layouts generated other tokens")
            << " (" << runs.size() << " layout(s), " << questions.size() << " questions, " << a.shots << " shots, "
            << dtype_name(dtype) << ")\n";
  if (!a.json.empty()) std::cout << "record written to " << a.json << "\n";
  return 0;
}

}  // namespace

std::function<int()> add_gsm8k_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<Gsm8kArgs>();
  a->backend = to_string(default_backend());
  CLI::App* sub = app.add_subcommand("gsm8k", "k-shot GSM8K through the reference and each layout: accuracy with a "
                                              "95% interval, tokens/s, and token agreement with the reference");
  a->sub = sub;
  sub->add_option("--model", a->model, "Checkpoint directory (with its tokenizer.json) or preset")->required();
  sub->add_option("--layout", a->layout, "Layout names (comma-separated), all, or none (the reference only)");
  sub->add_option("--backend", a->backend, "cpu (CPU ranks) or nccl (one GPU per rank); default nccl in CUDA builds");
  sub->add_option("--ranks,--gpus", a->ranks, "Number of ranks")->required()->check(positive_integer());
  add_parallel_flags(*sub, a->parallel);
  sub->add_option("--data", a->data, "GSM8K questions, JSONL (the test set)")->required()->check(input_file());
  sub->add_option("--train", a->train, "Where the shots come from (default: train.jsonl beside --data)")
      ->check(input_file());
  sub->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: the checkpoint's; for the qwen3-30b-a3b and "
                  "deepseek-v3 presets, the real one under ../shared/tokenizers or $LB_SHARED_DIR/tokenizers)")
      ->check(input_file());
  sub->add_option("--shots", a->shots, "Solved examples before each question")->check(non_negative_integer());
  sub->add_option("--shot-seed", a->shot_seed, "Draw the shots at random with this seed (default: the first ones)")
      ->check(seed_value());
  sub->add_option("--num-questions", a->num_questions, "The first N questions (0: all)")->check(non_negative_integer());
  sub->add_option("--max-new-tokens", a->max_new_tokens, "Tokens generated at most per question")
      ->check(positive_integer());
  sub->add_option("--batch-size", a->batch_size, "Questions prefilled and decoded together")->check(positive_integer());
  sub->add_option("--layers", a->layers, "Run only the first N decoder layers")->check(positive_integer());
  sub->add_option("--dtype", a->dtype, "f32, bf16 or f16 (default bf16 on GPUs, f32 on CPU ranks)");
  sub->add_option("--seed", a->seed, "Seed of the random weights (without a checkpoint)")->check(seed_value());
  sub->add_option("--kernels", a->kernels, "The layouts' kernels: reference (plain LibTorch) or fused (sorted pairs and grouped GEMMs for the "
                  "MoE experts); the reference keeps the plain path");
  sub->add_option("--reference-kernels", a->reference_kernels,
                  "The reference's kernels: reference (the plain oracle path, default) or fused (a fast reference for "
                  "long runs, e.g. 48 layers, where token agreement is still read against it)");
  sub->add_option("--cuda-graphs", a->cuda_graphs,
                  "The layouts' decode steps: on, off or auto (default: on with fused kernels on GPUs), each captured "
                  "once per batch bucket and replayed");
  sub->add_option("--temperature", a->sampling.temperature, "0: greedy (default); else sampled")
      ->check(finite_at_least(0));
  sub->add_option("--top-k", a->sampling.top_k, "With --temperature: keep the k most likely tokens (0: all)")
      ->check(non_negative_integer());
  sub->add_option("--top-p", a->sampling.top_p, "With --temperature: keep the most likely tokens up to this mass")
      ->check(positive_number());
  sub->add_option("--sampling-seed", a->sampling.seed, "Seed of the draws (question i uses seed + i)")
      ->check(seed_value());
  sub->add_flag("--skip-bad-lines", a->skip_bad_lines,
                "Pass over malformed lines (listed in the record) instead of stopping at the first");
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--json", a->json, "Write the record (written after every run, so a failure keeps what finished)")
      ->check(output_file());
  return [a, argv] { return run_gsm8k(*a, argv); };
}

}  // namespace lb
