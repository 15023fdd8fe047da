#include "layouts/layout_check.h"

#include "harness/runtime/device.h"
#include "layouts/layout_rank.h"

#include <chrono>
#include <iomanip>
#include <sstream>

namespace lb {

LayoutCheck check_layout(RankContext& ctx, const LayoutSpec& layout, const ParallelConfig& parallel,
                         const ModelConfig& config, const WeightSource& weights, ReferenceOptions options,
                         const TokenBatch& batch, const std::vector<torch::Tensor>& reference_layers,
                         const std::vector<double>& max_rel_l2, const OpCheckOptions& op_check,
                         const DecodeCheckOptions& decode) {
  torch::NoGradGuard no_grad;
  LayoutCheck result;
  result.layout = layout.name;
  result.parallel = parallel;
  LayoutRank rank(ctx, layout, parallel, config, weights, options, batch.seq_lens, op_check.mutation);
  ctx.quiesce();  // every rank's weights and groups are set up before any collective runs
  for (const auto& t : rank.tokens()) result.rank_tokens.push_back(t.size(0));
  for (Communicator* c : rank.communicators()) c->set_timing(true), c->clear_records();

  // The layers run first, timed, with their outputs kept; the oracle's gathers come after, so
  // they count in neither the time nor the records.
  std::vector<torch::Tensor> outputs;
  torch::Tensor x = rank.embed(batch.ids);
  ctx.world().barrier();
  const auto start = std::chrono::steady_clock::now();
  std::vector<LayerCapture> captures(op_check.capture ? config.num_layers : 0);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    x = rank.layer_forward(i, x, op_check.capture ? &captures[i] : nullptr);
    outputs.push_back(x);
  }
  synchronize(options.device);
  result.layout_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (Communicator* c : rank.communicators())
    result.records.insert(result.records.end(), c->records().begin(), c->records().end());

  const int64_t total = batch.ids.size(0);
  result.pass = true;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    torch::Tensor full = rank.in_token_order(outputs[i], total);
    if (ctx.rank() != 0) continue;
    LayerVerdict v;
    v.layer = i;
    v.diff = compare_tensors(full, reference_layers.at(i).to(full.device()));
    v.threshold = max_rel_l2.at(i);
    v.pass = v.diff.finite && v.diff.rel_l2 < v.threshold;
    result.pass = result.pass && v.pass;
    result.layers.push_back(v);
  }
  for (int64_t i = 0; i < int64_t(captures.size()); ++i) {
    auto pieces = gather_capture(ctx, captures[i]);
    if (ctx.rank() != 0) continue;
    const auto no_thresholds = std::map<std::string, double>{};
    const auto& thresholds = i < int64_t(op_check.thresholds.size()) ? op_check.thresholds[i] : no_thresholds;
    for (OpVerdict& v : compare_capture(i, pieces, op_check.reference->at(i), thresholds, max_rel_l2.at(i))) {
      if (!v.pass && !result.first_divergence) result.first_divergence = v;
      result.pass = result.pass && v.pass;
      result.ops.push_back(std::move(v));
    }
  }
  if (decode.steps > 0) {
    result.decode = check_decode(ctx, rank, batch, decode.steps, decode.reference, decode.thresholds);
    for (const DecodeVerdict& v : result.decode) result.pass = result.pass && v.pass;
  }
  ctx.quiesce();  // no collective in flight while `rank` frees its weights and communicators
  return result;
}

std::string format_layout_check(const LayoutCheck& c) {
  std::ostringstream out;
  const LayoutSpec& spec = find_layout(c.layout);
  const ParallelConfig& p = c.parallel;
  out << "layout " << c.layout << (spec.replaces.empty() ? "" : " (replaces " + spec.replaces + ")") << ": "
      << spec.summary << "\n  tp=" << p.tp << " dp=" << p.dp << " attn_cp=" << p.attn_cp << " attn_tp=" << p.attn_tp()
      << " moe_dp=" << p.moe_dp << " moe_ep=" << p.moe_ep << " moe_tp=" << p.moe_tp()
      << " moe_dense_tp=" << (p.moe_dense_tp ? std::to_string(*p.moe_dense_tp) : "none") << "; split "
      << to_string(spec.split) << "; rows per rank";
  for (int64_t r : c.rank_tokens) out << " " << r;
  out << "\n  layer     max_abs      rel_l2      cosine   threshold  verdict\n";
  for (const LayerVerdict& v : c.layers)
    out << std::setw(7) << v.layer << std::scientific << std::setprecision(3) << std::setw(12) << v.diff.max_abs
        << std::setw(12) << v.diff.rel_l2 << std::fixed << std::setprecision(7) << std::setw(12) << v.diff.cosine
        << std::scientific << std::setprecision(2) << std::setw(12) << v.threshold << "  "
        << (v.pass ? "ok" : (v.diff.finite ? "DIVERGES" : "NOT FINITE")) << "\n";
  if (c.first_divergence) {
    out << "  first divergence: " << describe(*c.first_divergence) << "\n";
    out << "    layer " << c.first_divergence->layer << " by op:";
    for (const OpVerdict& v : c.ops)
      if (v.layer == c.first_divergence->layer)
        out << " " << v.op << std::scientific << std::setprecision(1) << "=" << v.diff.rel_l2 << (v.pass ? "" : "!");
    out << "\n";
  }
  for (const LayerVerdict& v : c.layers)
    if (!v.pass && !c.first_divergence) {
      out << "  first divergence: layer " << v.layer << " (relative L2 " << std::scientific << v.diff.rel_l2
          << " >= " << v.threshold << ")\n";
      break;
    }
  out << format_decode_verdicts(c.decode);
  out << std::fixed << std::setprecision(2) << "  layers took " << c.layout_ms << " ms on rank 0, "
      << c.records.size() << " collectives\n";
  return out.str();
}

nlohmann::json to_json(const LayoutCheck& c) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerVerdict& v : c.layers)
    layers.push_back({{"layer", v.layer},
                      {"max_abs", v.diff.max_abs},
                      {"rel_l2", v.diff.rel_l2},
                      {"cosine", v.diff.cosine},
                      {"finite", v.diff.finite},
                      {"threshold", v.threshold},
                      {"pass", v.pass}});
  // Collective time and bytes per (op, group), summed over the layers, rank 0.
  const nlohmann::json comm = summarize_collectives(c.records);
  nlohmann::json ops = nlohmann::json::array();
  for (const OpVerdict& v : c.ops) ops.push_back(to_json(v));
  nlohmann::json decode = nlohmann::json::array();
  for (const DecodeVerdict& v : c.decode) decode.push_back(to_json(v));
  const LayoutSpec& spec = find_layout(c.layout);
  return {{"layout", c.layout},
          {"replaces", spec.replaces},
          {"parallel", c.parallel.to_json()},
          {"split", to_string(spec.split)},
          {"rank_tokens", c.rank_tokens},
          {"pass", c.pass},
          {"layers", layers},
          {"layout_ms", c.layout_ms},
          {"collectives", comm},
          {"ops", ops},
          {"decode", decode},
          {"first_divergence", c.first_divergence ? to_json(*c.first_divergence) : nlohmann::json()}};
}

}  // namespace lb
