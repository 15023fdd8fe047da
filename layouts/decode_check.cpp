#include "layouts/decode_check.h"

#include <algorithm>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace lb {

namespace {

int64_t decode_capacity(const TokenBatch& batch, int steps) {
  return *std::max_element(batch.seq_lens.begin(), batch.seq_lens.end()) + steps + 1;
}

constexpr int64_t kNoFlip = std::numeric_limits<int64_t>::max();

// bool [S] on the CPU: the rows of step s, layer i whose expert sets differ between two traces
// (none on a dense layer, or where a trace has no routing).
torch::Tensor experts_differ(const DecodeTrace& a, const DecodeTrace& b, size_t s, size_t i, int64_t sequences) {
  const auto routing = [&](const DecodeTrace& t) {
    return s < t.experts.size() && i < t.experts[s].size() ? t.experts[s][i] : torch::Tensor();
  };
  const torch::Tensor x = routing(a), y = routing(b);
  if (!x.defined() || !y.defined()) return torch::zeros({sequences}, torch::kBool);
  return flipped_rows(x, y);
}

}  // namespace

DecodeFlips::DecodeFlips(int64_t sequences)
    : from_layer_(size_t(sequences), kNoFlip), this_step_(size_t(sequences), kNoFlip) {}

void DecodeFlips::start_step() {
  for (size_t r = 0; r < this_step_.size(); ++r) {
    from_layer_[r] = std::min(from_layer_[r], this_step_[r]);
    this_step_[r] = kNoFlip;
  }
}

torch::Tensor DecodeFlips::left_out(int64_t layer, const torch::Tensor& flips, torch::Tensor* fresh) {
  const torch::Tensor f = flips.to(torch::kCPU, torch::kBool).contiguous();
  const int64_t n = int64_t(this_step_.size());
  torch::Tensor out = torch::zeros({n}, torch::kBool), first = torch::zeros({n}, torch::kBool);
  for (int64_t r = 0; r < n; ++r) {
    const bool before = this_step_[size_t(r)] < layer || from_layer_[size_t(r)] < layer;
    const bool here = f.data_ptr<bool>()[r];
    if (here && this_step_[size_t(r)] == kNoFlip) this_step_[size_t(r)] = layer;
    out.data_ptr<bool>()[r] = before || here;
    first.data_ptr<bool>()[r] = here && !before;
  }
  if (fresh) *fresh = first;
  return out;
}

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
    std::vector<Routing> routing;
    logits = model.decode(token, cache, &layers, &routing);
    for (torch::Tensor& l : layers) l = l.to(torch::kFloat32);
    trace.layers.push_back(std::move(layers));
    std::vector<torch::Tensor> experts, router;
    for (const Routing& r : routing) {
      experts.push_back(r.experts.defined() ? r.experts.to(torch::kCPU, torch::kInt64) : torch::Tensor());
      router.push_back(r.logits.defined() ? r.logits.to(torch::kCPU, torch::kFloat32) : torch::Tensor());
    }
    trace.experts.push_back(std::move(experts));
    trace.router_logits.push_back(std::move(router));
  }
  return trace;
}

std::vector<double> decode_noise_floor(const DecodeTrace& low, const DecodeTrace& exact) {
  std::vector<double> floor;
  const int64_t sequences = low.layers.empty() || low.layers[0].empty() ? 0 : low.layers[0][0].size(0);
  DecodeFlips flips(sequences);
  for (size_t s = 0; s < low.layers.size(); ++s) {
    flips.start_step();
    for (size_t i = 0; i < low.layers[s].size(); ++i) {
      if (floor.size() <= i) floor.push_back(0.0);
      const torch::Tensor& a = low.layers[s][i];
      const torch::Tensor kept =
          flips.left_out(int64_t(i), experts_differ(low, exact, s, i, sequences)).logical_not().nonzero().view({-1});
      if (kept.numel() == 0) continue;  // every row chose other experts in the two references
      const torch::Tensor rows = kept.to(a.device());
      floor[i] = std::max(floor[i], compare_tensors(a.index_select(0, rows),
                                                    exact.layers.at(s).at(i).to(a.device()).index_select(0, rows))
                                        .rel_l2);
    }
  }
  return floor;
}

DecodeVerdict judge_decode_layer(int step, int64_t layer, const torch::Tensor& layout, const DecodeTrace& low,
                                 const DecodeTrace* exact, const torch::Tensor& flips, const torch::Tensor& left_out,
                                 const torch::Tensor& fresh, const std::vector<OpPiece>& router, double threshold) {
  DecodeVerdict v;
  v.step = step;
  v.layer = layer;
  v.threshold = threshold;
  const int64_t sequences = layout.size(0);
  const torch::Tensor reference = low.layers.at(size_t(step)).at(size_t(layer)).to(layout.device());
  const torch::Tensor judged = exact ? left_out.to(torch::kCPU, torch::kBool).logical_not()
                                     : torch::ones({sequences}, torch::kBool);
  const torch::Tensor rows = judged.nonzero().view({-1}).to(layout.device());
  v.rows = rows.size(0);
  v.flips = exact ? flips.to(torch::kBool).sum().item<int64_t>() : 0;
  if (v.rows > 0) v.diff = compare_tensors(layout.index_select(0, rows), reference.index_select(0, rows));
  v.pass = v.diff.finite && v.diff.rel_l2 < threshold;
  // A row that chose other experts here for the first time: its router logits must agree with the
  // reference's within their own bound, or the token moved too far to call it a near-tie.
  const torch::Tensor low_logits =
      exact && fresh.to(torch::kBool).any().item<bool>() ? low.router_logits.at(size_t(step)).at(size_t(layer))
                                                         : torch::Tensor();
  if (low_logits.defined()) {
    const torch::Tensor first_flips = fresh.to(torch::kCPU, torch::kBool);
    std::vector<RowPiece> pieces;
    for (size_t r = 0; r < router.size(); ++r)
      pieces.push_back({router[r].rows, router[r].tokens, router[r].col_offset, int(r),
                        first_flips.index_select(0, router[r].tokens.to(torch::kCPU))});
    v.router_rows = judge_rows("router_logits", pieces, low_logits,
                               exact->router_logits.at(size_t(step)).at(size_t(layer)),
                               std::vector<int64_t>(size_t(sequences), 1));
    v.pass = v.pass && v.router_rows.pass();
  }
  return v;
}

std::vector<DecodeVerdict> check_decode(RankContext& ctx, LayoutRank& rank, const TokenBatch& batch, int steps,
                                        const DecodeTrace* trace, const std::vector<double>& thresholds,
                                        const DecodeTrace* exact_trace, bool flips) {
  torch::NoGradGuard no_grad;
  // Threaded ranks share the caller's options: the traces are rank 0's.
  const DecodeTrace* reference = ctx.rank() == 0 ? trace : nullptr;
  const DecodeTrace* exact = ctx.rank() == 0 && flips ? exact_trace : nullptr;
  if (reference && flips && !exact) throw std::logic_error("check_decode: flips are told from bugs on the f32 trace");
  const int64_t sequences = int64_t(batch.seq_lens.size());
  const torch::Device device = ctx.device();
  rank.start_generation(sequences, decode_capacity(batch, steps));
  rank.prefill(batch.ids, batch.seq_lens);
  std::vector<DecodeVerdict> verdicts;
  DecodeFlips left(sequences);
  int64_t flipped = 0, moe_layers = 0;
  if (exact && !reference->experts.empty())
    for (const torch::Tensor& e : reference->experts.front()) moe_layers += e.defined();
  const double most_flips = kMaxRoutingFlipFraction * double(sequences * moe_layers * steps);
  for (int s = 0; s < steps; ++s) {
    // Every rank feeds rank 0's reference tokens (ids below 2^24 travel exactly as float32).
    torch::Tensor token = reference ? reference->fed.at(size_t(s)).to(device, torch::kFloat32)
                                    : torch::zeros({sequences}, torch::TensorOptions().device(device));
    if (ctx.world_size() > 1) ctx.world().broadcast(token, 0);
    std::vector<torch::Tensor> outputs;
    std::vector<LayerCapture> captures;
    if (flips) captures.assign(size_t(rank.config().num_layers), LayerCapture::routing_only());
    rank.decode(token.to(torch::kInt64), &outputs, flips ? &captures : nullptr);
    left.start_step();
    for (size_t i = 0; i < outputs.size(); ++i) {
      const torch::Tensor full = rank.in_token_order(outputs[i], sequences);
      std::vector<std::vector<OpPiece>> pieces;
      if (flips) pieces = gather_capture(ctx, captures[i]);  // collective
      if (!reference) continue;
      torch::Tensor changed = torch::zeros({sequences}, torch::kBool), left_out = changed, fresh = changed;
      if (exact) {
        changed = flipped_tokens(pieces_of(pieces, "topk_experts"), reference->experts.at(size_t(s)).at(i), sequences);
        left_out = left.left_out(int64_t(i), changed, &fresh);
      }
      DecodeVerdict v = judge_decode_layer(s, int64_t(i), full, *reference, exact, changed, left_out, fresh,
                                           exact ? pieces_of(pieces, "router_logits") : std::vector<OpPiece>{},
                                           thresholds.at(i));
      flipped += v.flips;
      if (double(flipped) > most_flips) {
        v.too_many_flips = true;
        v.pass = false;
      }
      verdicts.push_back(v);
    }
  }
  return verdicts;
}

namespace {

const char* status(const DecodeVerdict& v) {
  if (v.pass) return "ok";
  if (!v.diff.finite) return "NOT FINITE";
  if (v.too_many_flips) return "TOO MANY FLIPS";
  if (v.diff.rel_l2 >= v.threshold) return "DIVERGES";
  return "ROUTER LOGITS";  // a row that changed experts, its router logits past their bound
}

}  // namespace

std::string format_decode_verdicts(const std::vector<DecodeVerdict>& verdicts) {
  if (verdicts.empty()) return "";
  std::ostringstream out;
  int steps = 0;
  int64_t flips = 0;
  std::vector<const DecodeVerdict*> worst;  // per layer, a failing step, else the step closest to its threshold
  const DecodeVerdict* first = nullptr;
  for (const DecodeVerdict& v : verdicts) {
    steps = std::max(steps, v.step + 1);
    flips += v.flips;
    if (worst.size() <= size_t(v.layer)) worst.resize(size_t(v.layer) + 1, nullptr);
    const DecodeVerdict*& w = worst[size_t(v.layer)];
    if (!w || (w->pass && (!v.pass || v.diff.rel_l2 / v.threshold > w->diff.rel_l2 / w->threshold))) w = &v;
    if (!v.pass && !first) first = &v;
  }
  out << "  decode, " << steps << " steps after the prefill; worst step per layer:\n"
      << "  layer  step      rel_l2   threshold  verdict\n";
  for (const DecodeVerdict* w : worst)
    if (w)
      out << std::setw(7) << w->layer << std::setw(6) << w->step << std::scientific << std::setprecision(3)
          << std::setw(12) << w->diff.rel_l2 << std::setprecision(2) << std::setw(12) << w->threshold << "  "
          << status(*w) << "\n";
  if (flips > 0)
    out << "  " << flips << " (step, layer, row) choices of other experts than the reference's, left out of their "
        << "layers' verdicts from there on (their router logits judged instead)\n";
  if (first) {
    out << "  first decode divergence: step " << first->step << ", layer " << first->layer << ": " << status(*first);
    if (first->diff.rel_l2 >= first->threshold || !first->diff.finite)
      out << " (relative L2 " << std::scientific << std::setprecision(2) << first->diff.rel_l2
          << " >= " << first->threshold << ")";
    else if (!first->router_rows.pass())
      out << " (" << describe(first->router_rows) << ")";
    out << "\n";
  }
  return out.str();
}

nlohmann::json to_json(const DecodeVerdict& v) {
  nlohmann::json j = {{"step", v.step},           {"layer", v.layer},         {"max_abs", v.diff.max_abs},
                      {"rel_l2", v.diff.rel_l2},  {"cosine", v.diff.cosine},  {"finite", v.diff.finite},
                      {"threshold", v.threshold}, {"pass", v.pass},           {"rows", v.rows},
                      {"flips", v.flips}};
  if (v.router_rows.judged) j["router_rows"] = to_json(v.router_rows);
  if (v.too_many_flips) j["too_many_flips"] = true;
  return j;
}

}  // namespace lb
