#pragma once
// Generation with a KV cache: a batch of prompts is prefilled together, then every unfinished
// sequence gets one token per step until EOS, a stop string or the token limit. The model side is
// a StepModel, either the single-device reference or one rank of a layout; the loop around it is
// the same, so their tokens can be compared one for one.
#include "datasets/tokenizer.h"
#include "harness/runtime/cuda_graph.h"
#include "harness/runtime/rank_context.h"
#include "layouts/layout_rank.h"
#include "layouts/sampling.h"
#include "oracles/kv_cache.h"
#include "oracles/reference_model.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lb {

struct GenerationOptions {
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;  // generation ends once the decoded text holds one of these
  std::optional<int64_t> eos;
  SamplingOptions sampling;       // sequence i draws with seed sampling.seed + i
  int64_t batch_size = 16;        // prompts prefilled together
  // Only ids below this are chosen (0: any): a model's vocabulary is often padded past its
  // tokenizer's (Qwen3's 151936 rows are more than its tokenizer's ids), and random weights
  // favour no row.
  int64_t vocab_limit = 0;
};

struct Generation {
  std::vector<int64_t> tokens;  // the EOS, or the token that completed a stop string, included
  std::string text;             // decode(tokens)
  std::string finish;           // "eos", "stop" or "length"
};

struct GenerationStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0;
  double prefill_ms = 0, decode_ms = 0;
  int64_t dealt_prefills = 0;  // prefills a CP layout could not split its own way (split_generation_tokens)
};

// How a step model runs its decode steps on a GPU.
struct DecodeOptions {
  // Capture each decode step once per batch-size bucket in a CUDA graph and replay it (fused
  // kernels on a CUDA build only: the plain path synchronizes with the host).
  bool cuda_graphs = false;
};

// `--cuda-graphs`: "on", "off" or "auto" (on where it can be: fused kernels on GPUs, a CUDA build
// with LibTorch 2); InputError naming what is missing for "on".
bool parse_cuda_graphs(const std::string& text, bool fused, bool gpu);

// The batch-size buckets graphs are captured for: a batch runs padded to the smallest bucket that
// holds it (padded rows decode a dummy token and are dropped). Larger batches run eagerly.
int64_t decode_bucket(int64_t sequences);
constexpr int64_t kLargestDecodeBucket = 256;
// The rows a decode step of `sequences` runs: its bucket with graphs, else the sequences themselves.
int64_t decode_rows(const DecodeOptions& options, int64_t sequences);

class StepModel {
 public:
  virtual ~StepModel() = default;
  // A new batch of `sequences`, each with room for `capacity` tokens (prompt and generated).
  virtual void start_batch(int64_t sequences, int64_t capacity) = 0;
  // The whole prompts; returns float32 logits [S, V] of each prompt's last token, on the model's
  // device. Collective for a layout.
  virtual torch::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) = 0;
  // One token per sequence (int64 [S] on the model's device) after what its cache holds; every
  // sequence advances, finished ones too (the caller ignores their rows). Returns float32 logits
  // [S, V] on the device without reading anything back to the host. Collective for a layout.
  virtual torch::Tensor decode(const torch::Tensor& tokens) = 0;
  virtual torch::Device device() const = 0;
  // Whether the last prefill used the layout's own token split (a reference always does).
  virtual bool last_prefill_layout_split() const { return true; }
};

// Batch bucketing and the captured decode step, shared by the reference and the layouts.
class GraphedDecode {
 public:
  using Setup = std::function<void(int64_t bucket, int64_t capacity)>;  // allocate caches, plan
  using Step = std::function<torch::Tensor(const torch::Tensor& tokens)>;
  using Reset = std::function<void()>;                                   // forget a warm-up's writes
  GraphedDecode(DecodeOptions options, torch::Device device, Setup setup, Step step, Reset reset)
      : options_(options), device_(device), setup_(std::move(setup)), step_(std::move(step)), reset_(std::move(reset)) {}
  void start_batch(int64_t sequences, int64_t capacity);
  torch::Tensor decode(const torch::Tensor& tokens);

 private:
  DecodeOptions options_;
  torch::Device device_;
  Setup setup_;
  Step step_;
  Reset reset_;
  int64_t sequences_ = 0, bucket_ = 0, capacity_ = 0;
  std::unique_ptr<CapturedStep> graph_;
};

class ReferenceStepModel : public StepModel {
 public:
  explicit ReferenceStepModel(const ReferenceModel& model, DecodeOptions options = {});
  void start_batch(int64_t sequences, int64_t capacity) override { decode_.start_batch(sequences, capacity); }
  torch::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) override;
  torch::Tensor decode(const torch::Tensor& tokens) override { return decode_.decode(tokens); }
  torch::Device device() const override { return model_.options().device; }

 private:
  const ReferenceModel& model_;
  KvCache cache_;
  GraphedDecode decode_;
};

// One rank of a layout. Every rank runs the same generate() loop on the same logits, so all
// choose the same tokens.
class LayoutStepModel : public StepModel {
 public:
  LayoutStepModel(LayoutRank& rank, torch::Device device, DecodeOptions options = {});
  void start_batch(int64_t sequences, int64_t capacity) override { decode_.start_batch(sequences, capacity); }
  torch::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) override;
  torch::Tensor decode(const torch::Tensor& tokens) override { return decode_.decode(tokens); }
  torch::Device device() const override { return device_; }
  bool last_prefill_layout_split() const override { return rank_.last_prefill_layout_split(); }

 private:
  LayoutRank& rank_;
  torch::Device device_;
  GraphedDecode decode_;
};

// InputError on options out of range, an empty prompt, or a prompt that with max_new_tokens passes
// `max_position`. `name(i)` says which prompt in the message ("prompt i" by default), so a command
// can check its inputs before any model work and name their source.
void check_generation_inputs(const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                             int64_t max_position, const std::function<std::string(size_t)>& name = {});

// Checks its inputs with check_generation_inputs first.
std::vector<Generation> generate(StepModel& model, const Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                                 int64_t max_position, GenerationStats* stats = nullptr,
                                 const std::function<void(int64_t done)>& on_done = {});

}  // namespace lb
