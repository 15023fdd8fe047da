#pragma once
// Generation with a KV cache: a batch of prompts is prefilled together, then every unfinished
// sequence gets one token per step until EOS, a stop string or the token limit. The model side is
// a StepModel, either the single-device reference or one rank of a layout; the loop around it is
// the same, so their tokens can be compared one for one.
#include "datasets/tokenizer.h"
#include "harness/runtime/rank_context.h"
#include "layouts/layout_rank.h"
#include "layouts/sampling.h"
#include "oracles/kv_cache.h"
#include "oracles/reference_model.h"

#include <functional>
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

class StepModel {
 public:
  virtual ~StepModel() = default;
  // A new batch of `sequences`, with empty caches.
  virtual void start_batch(int64_t sequences) = 0;
  // Runs new_tokens[s] after the tokens sequence s already has in the cache (none: the sequence
  // is finished and nothing runs for it). Returns float32 CPU logits [S, V]: row s follows
  // sequence s's last new token (rows of finished sequences are zeros). Collective for a layout.
  virtual torch::Tensor step(const std::vector<std::vector<int64_t>>& new_tokens) = 0;
  // Whether the last step used the layout's own token split (a reference always does).
  virtual bool last_step_layout_split() const { return true; }
};

class ReferenceStepModel : public StepModel {
 public:
  explicit ReferenceStepModel(const ReferenceModel& model) : model_(model) {}
  void start_batch(int64_t sequences) override;
  torch::Tensor step(const std::vector<std::vector<int64_t>>& new_tokens) override;

 private:
  const ReferenceModel& model_;
  KvCache cache_;
  std::vector<int64_t> past_;
};

// One rank of a layout. Every rank runs the same generate() loop on the same logits, so all
// choose the same tokens.
class LayoutStepModel : public StepModel {
 public:
  LayoutStepModel(RankContext& ctx, LayoutRank& rank, int64_t num_layers)
      : ctx_(ctx), rank_(rank), num_layers_(num_layers) {}
  void start_batch(int64_t sequences) override;
  torch::Tensor step(const std::vector<std::vector<int64_t>>& new_tokens) override;
  bool last_step_layout_split() const override { return layout_split_; }

 private:
  RankContext& ctx_;
  LayoutRank& rank_;
  int64_t num_layers_;
  KvCache cache_;
  std::vector<int64_t> past_;
  bool layout_split_ = true;
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
