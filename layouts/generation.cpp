#include "layouts/generation.h"

#include "harness/runtime/errors.h"

#include <algorithm>
#include <chrono>
#include <set>

namespace lb {

namespace {

struct PackedStep {
  std::vector<int64_t> lens;
  torch::Tensor ids;   // int64 [T], sequences end to end
  torch::Tensor last;  // int64: the index in `ids` of each running sequence's last new token
  std::vector<int64_t> running;  // the sequences that have new tokens, in order
};

PackedStep pack(const std::vector<std::vector<int64_t>>& new_tokens) {
  PackedStep p;
  std::vector<int64_t> ids, last;
  for (size_t s = 0; s < new_tokens.size(); ++s) {
    p.lens.push_back(int64_t(new_tokens[s].size()));
    ids.insert(ids.end(), new_tokens[s].begin(), new_tokens[s].end());
    if (!new_tokens[s].empty()) {
      last.push_back(int64_t(ids.size()) - 1);
      p.running.push_back(int64_t(s));
    }
  }
  p.ids = torch::tensor(ids, torch::kInt64);
  p.last = torch::tensor(last, torch::kInt64);
  return p;
}

// Rows of the running sequences' logits placed at their sequence index, on the host. A large
// batch's full-vocabulary rows are tens of MB: they are placed on the device and copied once into
// pinned memory, since a pageable copy of them took longer than the decode step's layers.
torch::Tensor by_sequence(const torch::Tensor& logits, const std::vector<int64_t>& running, int64_t sequences) {
  torch::Tensor placed = logits.to(torch::kFloat32);
  if (int64_t(running.size()) != sequences)  // `running` ascends, so all running is the identity
    placed = torch::zeros({sequences, logits.size(1)}, placed.options())
                 .index_copy_(0, torch::tensor(running, torch::kInt64).to(logits.device()), placed);
  if (!placed.is_cuda()) return placed.contiguous();
  torch::Tensor host = torch::empty(placed.sizes(), placed.options().device(torch::kCPU).pinned_memory(true));
  return host.copy_(placed);
}

void advance(std::vector<int64_t>& past, const std::vector<int64_t>& lens) {
  for (size_t s = 0; s < lens.size(); ++s) past[s] += lens[s];
}

}  // namespace

void ReferenceStepModel::start_batch(int64_t sequences) {
  cache_.clear();
  past_.assign(sequences, 0);
}

torch::Tensor ReferenceStepModel::step(const std::vector<std::vector<int64_t>>& new_tokens) {
  const PackedStep p = pack(new_tokens);
  const TokenPlacement tokens = packed_placement(p.lens, model_.options().device, past_);
  torch::Tensor logits = model_.step(p.ids, tokens, cache_, p.last);
  advance(past_, p.lens);
  return by_sequence(logits, p.running, int64_t(new_tokens.size()));
}

void LayoutStepModel::start_batch(int64_t sequences) {
  cache_.assign(num_layers_, LayerKvCache());
  past_.assign(sequences, 0);
}

torch::Tensor LayoutStepModel::step(const std::vector<std::vector<int64_t>>& new_tokens) {
  torch::NoGradGuard no_grad;
  const PackedStep p = pack(new_tokens);
  layout_split_ = rank_.set_batch(p.lens, past_);
  torch::Tensor x = rank_.embed(p.ids);
  for (int64_t i = 0; i < num_layers_; ++i) x = rank_.layer_forward(i, x, nullptr, &cache_[i]);

  // The last tokens' hidden states from the lowest rank holding each (attention TP peers hold the
  // same rows), gathered to every rank in one all_gatherv.
  const std::set<int64_t> wanted(p.last.data_ptr<int64_t>(), p.last.data_ptr<int64_t>() + p.last.numel());
  std::set<int64_t> claimed;
  std::vector<int64_t> counts, order, mine;
  for (int r = 0; r < int(rank_.tokens().size()); ++r) {
    const torch::Tensor& t = rank_.tokens()[r];
    const int64_t* idx = t.data_ptr<int64_t>();
    int64_t n = 0;
    for (int64_t row = 0; row < t.numel(); ++row)
      if (wanted.count(idx[row]) && claimed.insert(idx[row]).second) {
        ++n;
        order.push_back(idx[row]);
        if (r == ctx_.rank()) mine.push_back(row);
      }
    counts.push_back(n);
  }
  torch::Tensor rows = x.index_select(0, torch::tensor(mine, torch::kInt64).to(x.device())).contiguous();
  torch::Tensor gathered = ctx_.world().all_gatherv(rows, counts);
  torch::Tensor logits = rank_.logits(gathered);

  // Gather order -> the order of p.last (the running sequences', ascending token indices).
  std::vector<int64_t> to_running(order.size());
  const int64_t* last = p.last.data_ptr<int64_t>();
  for (size_t i = 0; i < order.size(); ++i)
    to_running[std::lower_bound(last, last + p.last.numel(), order[i]) - last] = int64_t(i);
  logits = logits.index_select(0, torch::tensor(to_running, torch::kInt64).to(logits.device()));
  advance(past_, p.lens);
  return by_sequence(logits, p.running, int64_t(new_tokens.size()));
}

namespace {

// The earliest stop string in `text` that ends after `from` (older text was checked already).
bool has_stop(const std::string& text, size_t from, const std::vector<std::string>& stop) {
  for (const std::string& s : stop) {
    const size_t start = from >= s.size() ? from - s.size() + 1 : 0;
    if (!s.empty() && text.find(s, start) != std::string::npos) return true;
  }
  return false;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void check_generation_inputs(const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                             int64_t max_position, const std::function<std::string(size_t)>& name) {
  validate(options.sampling);
  if (options.max_new_tokens < 1) throw InputError("--max-new-tokens must be >= 1");
  if (options.batch_size < 1) throw InputError("--batch-size must be >= 1");
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string which = name ? name(i) : "prompt " + std::to_string(i);
    if (prompts[i].empty()) throw InputError(which + " has no tokens");
    if (int64_t(prompts[i].size()) + options.max_new_tokens > max_position)
      throw InputError(which + ": its prompt has " + std::to_string(prompts[i].size()) + " tokens, with --max-new-tokens " +
                       std::to_string(options.max_new_tokens) + " past the model's " + std::to_string(max_position) +
                       " positions (use a shorter prompt, fewer --shots, or fewer --max-new-tokens)");
  }
}

std::vector<Generation> generate(StepModel& model, const Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                                 int64_t max_position, GenerationStats* stats,
                                 const std::function<void(int64_t done)>& on_done) {
  check_generation_inputs(prompts, options, max_position);
  GenerationStats local;
  GenerationStats& st = stats ? *stats : local;
  std::vector<Generation> out(prompts.size());
  for (size_t first = 0; first < prompts.size(); first += size_t(options.batch_size)) {
    const size_t n = std::min(prompts.size() - first, size_t(options.batch_size));
    std::vector<Sampler> samplers;
    for (size_t i = 0; i < n; ++i) {
      SamplingOptions s = options.sampling;
      s.seed += first + i;
      samplers.emplace_back(s);
    }
    std::vector<std::vector<int64_t>> next(prompts.begin() + first, prompts.begin() + first + n);
    std::vector<bool> done(n, false);
    model.start_batch(int64_t(n));
    for (bool prefill = true;; prefill = false) {
      int64_t tokens = 0;
      for (const auto& t : next) tokens += int64_t(t.size());
      if (tokens == 0) break;
      const auto start = std::chrono::steady_clock::now();
      torch::Tensor logits = model.step(next);
      if (options.vocab_limit > 0 && options.vocab_limit < logits.size(1)) logits = logits.narrow(1, 0, options.vocab_limit);
      (prefill ? st.prefill_ms : st.decode_ms) += ms_since(start);
      (prefill ? st.prefill_tokens : st.decode_tokens) += tokens;
      if (prefill && !model.last_step_layout_split()) ++st.dealt_prefills;
      if (!prefill) ++st.decode_steps;
      for (size_t i = 0; i < n; ++i) {
        next[i].clear();
        if (done[i]) continue;
        Generation& g = out[first + i];
        const int64_t token = samplers[i].next(logits[int64_t(i)]);
        g.tokens.push_back(token);
        const size_t checked = g.text.size();
        g.text = tokenizer.decode(g.tokens);
        if (options.eos && token == *options.eos) g.finish = "eos";
        else if (has_stop(g.text, checked, options.stop)) g.finish = "stop";
        else if (int64_t(g.tokens.size()) >= options.max_new_tokens) g.finish = "length";
        done[i] = !g.finish.empty();
        if (!done[i]) next[i] = {token};
      }
    }
    if (on_done) on_done(int64_t(first + n));
  }
  return out;
}

}  // namespace lb
