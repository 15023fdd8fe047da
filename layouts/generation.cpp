#include "layouts/generation.h"

#include "harness/runtime/errors.h"

#include <algorithm>
#include <chrono>
#include <set>

namespace lb {

bool parse_cuda_graphs(const std::string& text, bool fused, bool gpu) {
  if (text == "off") return false;
  if (text == "auto") return fused && gpu && cuda_graphs_supported();
  if (text != "on") throw InputError("--cuda-graphs '" + text + "': on, off or auto");
  if (!cuda_graphs_supported()) throw InputError("--cuda-graphs on: this build has no CUDA graphs (a CUDA build with LibTorch 2)");
  if (!gpu) throw InputError("--cuda-graphs on needs GPUs (--backend nccl)");
  if (!fused) throw InputError("--cuda-graphs on needs --kernels fused: the plain path synchronizes with the host");
  return true;
}

int64_t decode_rows(const DecodeOptions& options, int64_t sequences) {
  return options.cuda_graphs && sequences <= kLargestDecodeBucket ? decode_bucket(sequences) : sequences;
}

int64_t decode_bucket(int64_t sequences) {
  int64_t bucket = 1;
  while (bucket < sequences) bucket *= 2;
  return bucket;
}

void GraphedDecode::start_batch(int64_t sequences, int64_t capacity) {
  const bool graphs = options_.cuda_graphs && sequences <= kLargestDecodeBucket;
  const int64_t bucket = decode_rows(options_, sequences);
  // Room rounded up, so that batches whose prompts differ a little share one cache and one graph.
  const int64_t room = (capacity + 127) / 128 * 128;
  if (bucket != bucket_ || room > capacity_ || graphs != bool(graph_)) {
    graph_.reset();  // its memory and the cache it reads go before new ones are made
    setup_(bucket, room);
    bucket_ = bucket;
    capacity_ = room;
    if (graphs) {
      graph_ = std::make_unique<CapturedStep>(
          step_, torch::zeros({bucket}, torch::TensorOptions().dtype(torch::kInt64).device(device_)));
      reset_();  // the warm-up step wrote one position of every slot
    }
  }
  sequences_ = sequences;
}

torch::Tensor GraphedDecode::decode(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.size(0) == sequences_, "decode: ", tokens.size(0), " tokens for ", sequences_, " sequences");
  torch::Tensor ids = tokens;
  if (bucket_ > sequences_)  // padded rows decode token 0; their logits are dropped
    ids = torch::cat({tokens, torch::zeros({bucket_ - sequences_}, tokens.options())});
  torch::Tensor logits = graph_ ? (*graph_)(ids) : step_(ids);
  return logits.narrow(0, 0, sequences_);
}

namespace {

// The prompts end to end, and their lengths.
std::pair<torch::Tensor, std::vector<int64_t>> pack(const std::vector<std::vector<int64_t>>& prompts) {
  std::vector<int64_t> ids, lens;
  for (const auto& p : prompts) {
    ids.insert(ids.end(), p.begin(), p.end());
    lens.push_back(int64_t(p.size()));
  }
  return {torch::tensor(ids, torch::kInt64), lens};
}

}  // namespace

ReferenceStepModel::ReferenceStepModel(const ReferenceModel& model, DecodeOptions options)
    : model_(model),
      decode_(
          options, model.options().device,
          [this](int64_t bucket, int64_t capacity) {
            cache_ = KvCache();  // the old cache goes before the new one is made
            cache_ = model_.make_cache(bucket, capacity);
          },
          [this](const torch::Tensor& tokens) { return model_.decode(tokens, cache_); },
          [this] { cache_.lengths().zero_(); }) {}

torch::Tensor ReferenceStepModel::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  const auto [ids, lens] = pack(prompts);
  return model_.prefill(ids, lens, cache_);
}

LayoutStepModel::LayoutStepModel(LayoutRank& rank, torch::Device device, DecodeOptions options)
    : rank_(rank),
      device_(device),
      decode_(
          options, device, [this](int64_t bucket, int64_t capacity) { rank_.start_generation(bucket, capacity); },
          [this](const torch::Tensor& tokens) { return rank_.decode(tokens); },
          [this] { rank_.cache().lengths().zero_(); }) {}

torch::Tensor LayoutStepModel::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  const auto [ids, lens] = pack(prompts);
  return rank_.prefill(ids, lens);
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

namespace {

// The next token of every sequence, on the logits' device: greedy on the device; a sampled
// sequence's row goes to the host for its own seeded sampler (finished sequences draw nothing, so
// a sequence's draws do not depend on the others').
torch::Tensor choose(const torch::Tensor& logits, std::vector<Sampler>& samplers, const std::vector<bool>& done,
                     const GenerationOptions& options) {
  const torch::Tensor l = options.vocab_limit > 0 && options.vocab_limit < logits.size(1)
                              ? logits.narrow(1, 0, options.vocab_limit)
                              : logits;
  if (options.sampling.temperature == 0) return l.argmax(1);  // the first maximum, as the sampler's greedy rule
  const torch::Tensor host = l.to(torch::kCPU);
  std::vector<int64_t> tokens(done.size(), 0);
  for (size_t i = 0; i < done.size(); ++i)
    if (!done[i]) tokens[i] = samplers[i].next(host[int64_t(i)]);
  return torch::tensor(tokens, torch::kInt64).to(logits.device());
}

}  // namespace

std::vector<Generation> generate(StepModel& model, const Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                                 int64_t max_position, GenerationStats* stats,
                                 const std::function<void(int64_t done)>& on_done) {
  check_generation_inputs(prompts, options, max_position);
  torch::NoGradGuard no_grad;
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
    const std::vector<std::vector<int64_t>> batch(prompts.begin() + first, prompts.begin() + first + n);
    int64_t longest = 0, prompt_tokens = 0;
    for (const auto& p : batch) longest = std::max(longest, int64_t(p.size())), prompt_tokens += int64_t(p.size());
    model.start_batch(int64_t(n), longest + options.max_new_tokens);
    std::vector<bool> done(n, false);
    auto start = std::chrono::steady_clock::now();
    torch::Tensor logits = model.prefill(batch);
    for (bool prefill = true;; prefill = false) {
      const torch::Tensor chosen = choose(logits, samplers, done, options);
      const torch::Tensor host = chosen.to(torch::kCPU);  // the step's one read back, for the stop rules
      (prefill ? st.prefill_ms : st.decode_ms) += ms_since(start);
      if (prefill) {
        st.prefill_tokens += prompt_tokens;
        if (!model.last_prefill_layout_split()) ++st.dealt_prefills;
      } else {
        ++st.decode_steps;
        st.decode_tokens += int64_t(std::count(done.begin(), done.end(), false));
      }
      const int64_t* token = host.data_ptr<int64_t>();
      for (size_t i = 0; i < n; ++i) {
        if (done[i]) continue;
        Generation& g = out[first + i];
        g.tokens.push_back(token[i]);
        const size_t checked = g.text.size();
        g.text = tokenizer.decode(g.tokens);
        if (options.eos && token[i] == *options.eos) g.finish = "eos";
        else if (has_stop(g.text, checked, options.stop)) g.finish = "stop";
        else if (int64_t(g.tokens.size()) >= options.max_new_tokens) g.finish = "length";
        done[i] = !g.finish.empty();
      }
      if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
      start = std::chrono::steady_clock::now();
      logits = model.decode(chosen);
    }
    if (on_done) on_done(int64_t(first + n));
  }
  return out;
}

}  // namespace lb
