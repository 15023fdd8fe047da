#include "layouts/layout_check.h"

#include "harness/runtime/device.h"
#include "layouts/layout_rank.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

namespace lb {

namespace {

// Every rank's rows of a layer output, gathered: one piece per world rank with its original
// token indices.
std::vector<RowPiece> gather_rows(RankContext& ctx, const LayoutRank& rank, const torch::Tensor& local) {
  std::vector<int64_t> rows;
  for (const auto& t : rank.tokens()) rows.push_back(t.size(0));
  torch::Tensor gathered = ctx.world().all_gatherv(local.contiguous(), rows);
  std::vector<RowPiece> pieces;
  int64_t offset = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    pieces.push_back({gathered.narrow(0, offset, rows[r]), rank.tokens()[r], 0, int(r), {}});
    offset += rows[r];
  }
  return pieces;
}

// The pieces put back in original token order (rows of attention-TP peers are identical; the last
// copy written wins).
torch::Tensor in_token_order(const std::vector<RowPiece>& pieces, int64_t total) {
  const torch::Tensor& first = pieces.at(0).rows;
  torch::Tensor full = torch::zeros({total, first.size(1)}, first.options());
  for (const RowPiece& p : pieces) full.index_copy_(0, p.tokens.to(full.device()), p.rows);
  return full;
}

// The row verdict of a layer's output, the rows `left_out` (this layer's flips, earlier ones and
// their shadows) left out; this layer's new flips are judged on their router logits instead, so
// that a bug that moves a token far enough to change its experts is not excused as a near-tie.
RowVerdict layer_rows(int64_t layer, std::vector<RowPiece> output, const std::vector<OpPiece>& router,
                      const torch::Tensor& left_out, const torch::Tensor& new_flips, const torch::Tensor& low,
                      const RowReference& ref, const std::vector<int64_t>& seq_lens) {
  for (RowPiece& p : output) p.judged = left_out.index_select(0, p.tokens.to(torch::kCPU)).logical_not();
  RowVerdict v = judge_rows("layer_out", output, low, ref.exact_layers.at(layer), seq_lens);
  if (!new_flips.any().item<bool>()) return v;
  std::vector<RowPiece> logits;
  for (size_t r = 0; r < router.size(); ++r)
    logits.push_back({router[r].rows, router[r].tokens, 0, int(r), new_flips.index_select(0, router[r].tokens)});
  return merge(v, judge_rows("router_logits", logits, ref.router_logits.at(layer), ref.exact_router_logits.at(layer),
                             seq_lens));
}

}  // namespace

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
  // Row verdicts need every layer's routing even without op capture: to leave top-k flips out.
  std::vector<LayerCapture> captures;
  if (op_check.capture || op_check.rows)
    captures.assign(config.num_layers, op_check.capture ? LayerCapture() : LayerCapture::routing_only());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    x = rank.layer_forward(i, x, captures.empty() ? nullptr : &captures[i]);
    outputs.push_back(x);
  }
  synchronize(options.device);
  result.layout_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (Communicator* c : rank.communicators())
    result.records.insert(result.records.end(), c->records().begin(), c->records().end());

  const int64_t total = batch.ids.size(0);
  const auto no_thresholds = std::map<std::string, double>{};
  // Rank 0, with row verdicts: rows left out from this layer on (earlier flips and their shadows).
  torch::Tensor left_out = torch::zeros({total}, torch::kBool);
  result.pass = true;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::vector<RowPiece> output = gather_rows(ctx, rank, outputs[i]);
    std::vector<std::vector<OpPiece>> pieces;
    if (!captures.empty()) pieces = gather_capture(ctx, captures[i]);
    if (ctx.rank() != 0) continue;
    const torch::Tensor full = in_token_order(output, total);
    const torch::Tensor reference = reference_layers.at(i).to(full.device());
    LayerVerdict v;
    v.layer = i;
    v.diff = compare_tensors(full, reference);
    v.threshold = max_rel_l2.at(i);
    v.pass = v.diff.finite && v.diff.rel_l2 < v.threshold;
    torch::Tensor flips = torch::zeros({total}, torch::kBool);
    if (op_check.rows) {
      const RowReference& ref = *op_check.row_reference;
      flips = flipped_tokens(pieces_of(pieces, "topk_experts"), ref.experts.at(i), total);
      v.flips = flips.sum().item<int64_t>();
      v.left_out = (flips | left_out).sum().item<int64_t>();
      v.row = layer_rows(i, output, pieces_of(pieces, "router_logits"), flips | left_out,
                         flips & left_out.logical_not(), reference, ref, batch.seq_lens);
      v.pass = v.pass && v.row.pass() && double(v.flips) <= kMaxRoutingFlipFraction * double(total);
      result.worst_row_ratio = std::max(result.worst_row_ratio, v.row.worst_ratio);
    }
    result.pass = result.pass && v.pass;
    result.layers.push_back(v);
    if (op_check.capture) {
      CaptureRows rows;
      if (op_check.rows) {
        rows.exact = &op_check.row_reference->exact_captures.at(i);
        rows.left_out = left_out;
        rows.seq_lens = batch.seq_lens;
      }
      const auto& thresholds = i < int64_t(op_check.thresholds.size()) ? op_check.thresholds[i] : no_thresholds;
      for (OpVerdict& o : compare_capture(i, pieces, op_check.reference->at(i), thresholds, max_rel_l2.at(i), rows)) {
        if (!o.pass && !result.first_divergence) result.first_divergence = o;
        result.pass = result.pass && o.pass;
        result.worst_row_ratio = std::max(result.worst_row_ratio, o.row.worst_ratio);
        result.ops.push_back(std::move(o));
      }
    }
    if (op_check.rows) left_out |= flip_shadow(flips, batch.seq_lens);
  }
  if (decode.steps > 0) {
    result.decode =
        check_decode(ctx, rank, batch, decode.steps, decode.reference, decode.thresholds, decode.exact, decode.flips);
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
  const bool rows = !c.layers.empty() && c.layers[0].row.judged;
  out << "\n  layer     max_abs      rel_l2      cosine   threshold" << (rows ? "  flips  rows>bound  worst/bound" : "")
      << "  verdict\n";
  for (const LayerVerdict& v : c.layers) {
    out << std::setw(7) << v.layer << std::scientific << std::setprecision(3) << std::setw(12) << v.diff.max_abs
        << std::setw(12) << v.diff.rel_l2 << std::fixed << std::setprecision(7) << std::setw(12) << v.diff.cosine
        << std::scientific << std::setprecision(2) << std::setw(12) << v.threshold;
    if (rows)
      out << std::setw(7) << v.flips << std::setw(12) << v.row.past_bound << std::fixed << std::setprecision(3)
          << std::setw(13) << v.row.worst_ratio;
    out << "  " << (v.pass ? "ok" : (v.diff.finite ? "DIVERGES" : "NOT FINITE")) << "\n";
  }
  for (const LayerVerdict& v : c.layers)
    if (!v.row.pass()) out << "    layer " << v.layer << ": " << describe(v.row) << "\n";
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
      out << "  first divergence: layer " << v.layer << std::scientific;
      if (!(v.diff.rel_l2 < v.threshold)) out << " (relative L2 " << v.diff.rel_l2 << " >= " << v.threshold << ")\n";
      else if (!v.row.pass()) out << ", " << describe(v.row) << "\n";
      else out << " (" << v.flips << " tokens changed experts, more than " << std::fixed << std::setprecision(0)
               << 100 * kMaxRoutingFlipFraction << "%)\n";
      break;
    }
  out << format_decode_verdicts(c.decode);
  if (rows) out << std::fixed << std::setprecision(3) << "  worst row: " << c.worst_row_ratio << " of its bound\n";
  out << std::fixed << std::setprecision(2) << "  layers took " << c.layout_ms << " ms on rank 0, "
      << c.records.size() << " collectives\n";
  return out.str();
}

nlohmann::json to_json(const LayoutCheck& c) {
  nlohmann::json layers = nlohmann::json::array();
  bool rows = false;
  for (const LayerVerdict& v : c.layers) {
    nlohmann::json l = {{"layer", v.layer},
                        {"max_abs", v.diff.max_abs},
                        {"rel_l2", v.diff.rel_l2},
                        {"cosine", v.diff.cosine},
                        {"finite", v.diff.finite},
                        {"threshold", v.threshold},
                        {"pass", v.pass}};
    if (v.row.judged) {
      l.update(to_json(v.row));
      l["flips"] = v.flips;
      l["rows_left_out"] = v.left_out;
      rows = true;
    }
    layers.push_back(l);
  }
  // Collective time and bytes per (op, group), summed over the layers, rank 0.
  const nlohmann::json comm = summarize_collectives(c.records);
  nlohmann::json ops = nlohmann::json::array();
  for (const OpVerdict& v : c.ops) ops.push_back(to_json(v));
  nlohmann::json decode = nlohmann::json::array();
  for (const DecodeVerdict& v : c.decode) decode.push_back(to_json(v));
  const LayoutSpec& spec = find_layout(c.layout);
  nlohmann::json j = {{"layout", c.layout},
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
  if (rows) j["worst_row_ratio"] = c.worst_row_ratio;
  return j;
}

}  // namespace lb
