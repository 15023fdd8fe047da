#include "layouts/decode_check.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace lb {

namespace {

int64_t decode_capacity(const TokenBatch& batch, int steps) {
  return *std::max_element(batch.seq_lens.begin(), batch.seq_lens.end()) + steps + 1;
}

}  // namespace

DecodeTrace reference_decode(const ReferenceModel& model, const TokenBatch& batch, int steps, const DecodeTrace* feed) {
  torch::NoGradGuard no_grad;
  const torch::Device device = model.options().device;
  KvCache cache = model.make_cache(int64_t(batch.seq_lens.size()), decode_capacity(batch, steps));
  torch::Tensor logits = model.prefill(batch.ids, batch.seq_lens, cache);
  DecodeTrace trace;
  for (int s = 0; s < steps; ++s) {
    const torch::Tensor token = feed ? feed->fed.at(size_t(s)).to(device) : logits.argmax(1);
    trace.fed.push_back(token.to(torch::kCPU));
    std::vector<torch::Tensor> layers;
    logits = model.decode(token, cache, &layers);
    for (torch::Tensor& l : layers) l = l.to(torch::kFloat32);
    trace.layers.push_back(std::move(layers));
  }
  return trace;
}

std::vector<double> decode_noise_floor(const DecodeTrace& low, const DecodeTrace& exact) {
  std::vector<double> floor;
  for (size_t s = 0; s < low.layers.size(); ++s)
    for (size_t i = 0; i < low.layers[s].size(); ++i) {
      if (floor.size() <= i) floor.push_back(0.0);
      floor[i] = std::max(floor[i], compare_tensors(low.layers[s][i], exact.layers.at(s).at(i)).rel_l2);
    }
  return floor;
}

std::vector<DecodeVerdict> check_decode(RankContext& ctx, LayoutRank& rank, const TokenBatch& batch, int steps,
                                        const DecodeTrace* trace, const std::vector<double>& thresholds) {
  torch::NoGradGuard no_grad;
  const DecodeTrace* reference = ctx.rank() == 0 ? trace : nullptr;  // threaded ranks share the caller's options
  const int64_t sequences = int64_t(batch.seq_lens.size());
  const torch::Device device = ctx.device();
  rank.start_generation(sequences, decode_capacity(batch, steps));
  rank.prefill(batch.ids, batch.seq_lens);
  std::vector<DecodeVerdict> verdicts;
  for (int s = 0; s < steps; ++s) {
    // Every rank feeds rank 0's reference tokens (ids below 2^24 travel exactly as float32).
    torch::Tensor token = reference ? reference->fed.at(size_t(s)).to(device, torch::kFloat32)
                                    : torch::zeros({sequences}, torch::TensorOptions().device(device));
    if (ctx.world_size() > 1) ctx.world().broadcast(token, 0);
    std::vector<torch::Tensor> outputs;
    rank.decode(token.to(torch::kInt64), &outputs);
    for (size_t i = 0; i < outputs.size(); ++i) {
      const torch::Tensor full = rank.in_token_order(outputs[i], sequences);
      if (!reference) continue;
      DecodeVerdict v;
      v.step = s;
      v.layer = int64_t(i);
      v.diff = compare_tensors(full, reference->layers.at(size_t(s)).at(i).to(full.device()));
      v.threshold = thresholds.at(i);
      v.pass = v.diff.finite && v.diff.rel_l2 < v.threshold;
      verdicts.push_back(v);
    }
  }
  return verdicts;
}

std::string format_decode_verdicts(const std::vector<DecodeVerdict>& verdicts) {
  if (verdicts.empty()) return "";
  std::ostringstream out;
  int steps = 0;
  std::vector<const DecodeVerdict*> worst;  // per layer, the step closest to its threshold
  const DecodeVerdict* first = nullptr;
  for (const DecodeVerdict& v : verdicts) {
    steps = std::max(steps, v.step + 1);
    if (worst.size() <= size_t(v.layer)) worst.resize(size_t(v.layer) + 1, nullptr);
    const DecodeVerdict*& w = worst[size_t(v.layer)];
    if (!w || v.diff.rel_l2 / v.threshold > w->diff.rel_l2 / w->threshold) w = &v;
    if (!v.pass && !first) first = &v;
  }
  out << "  decode, " << steps << " steps after the prefill; worst step per layer:\n"
      << "  layer  step      rel_l2   threshold  verdict\n";
  for (const DecodeVerdict* w : worst)
    if (w)
      out << std::setw(7) << w->layer << std::setw(6) << w->step << std::scientific << std::setprecision(3)
          << std::setw(12) << w->diff.rel_l2 << std::setprecision(2) << std::setw(12) << w->threshold << "  "
          << (w->pass ? "ok" : (w->diff.finite ? "DIVERGES" : "NOT FINITE")) << "\n";
  if (first)
    out << "  first decode divergence: step " << first->step << ", layer " << first->layer << " (relative L2 "
        << std::scientific << std::setprecision(2) << first->diff.rel_l2 << " >= " << first->threshold << ")\n";
  return out.str();
}

nlohmann::json to_json(const DecodeVerdict& v) {
  return {{"step", v.step},           {"layer", v.layer},         {"max_abs", v.diff.max_abs},
          {"rel_l2", v.diff.rel_l2},  {"cosine", v.diff.cosine},  {"finite", v.diff.finite},
          {"threshold", v.threshold}, {"pass", v.pass}};
}

}  // namespace lb
