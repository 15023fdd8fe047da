#include "layouts/op_check.h"

#include <algorithm>
#include <iomanip>
#include <limits>
#include <sstream>

namespace lb {

namespace {

torch::Tensor f32_on(const torch::Tensor& t, torch::Device device) {
  return t.to(torch::TensorOptions().dtype(torch::kFloat32).device(device)).contiguous();
}

// Rows of the reference matching a piece: its tokens and its column slice.
torch::Tensor reference_rows(const OpPiece& ref, const OpPiece& piece) {
  return ref.rows.index_select(0, piece.tokens.to(ref.rows.device()))
      .narrow(1, piece.col_offset, piece.rows.size(1))
      .to(torch::kCPU);
}

// Expert ids and weights of each row, sorted by expert id, so that the same set compares equal.
std::pair<torch::Tensor, torch::Tensor> by_expert(const torch::Tensor& experts, const torch::Tensor& weights) {
  auto [ids, order] = experts.sort(1);
  return {ids, weights.defined() ? weights.gather(1, order) : torch::Tensor()};
}

// Both references' top-k weights by expert id; the f32 reference's rows whose expert set differs
// from the low-precision one's are NaN (no floor of their own).
std::pair<torch::Tensor, torch::Tensor> weights_by_expert(const LayerCapture& low, const LayerCapture& exact) {
  const torch::Tensor low_experts = low.find("topk_experts")->rows, exact_experts = exact.find("topk_experts")->rows;
  torch::Tensor low_weights = by_expert(low_experts, low.find("topk_weights")->rows).second;
  torch::Tensor exact_weights = by_expert(exact_experts, exact.find("topk_weights")->rows).second.clone();
  exact_weights.index_put_({flipped_rows(exact_experts, low_experts)}, std::numeric_limits<float>::quiet_NaN());
  return {low_weights, exact_weights};
}

std::vector<int64_t> as_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kInt64).contiguous().view({-1});
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<std::pair<int64_t, int64_t>> ranges_of(std::vector<int64_t> tokens) {
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t t : tokens) {
    if (!out.empty() && out.back().second + 1 == t) out.back().second = t;
    else out.push_back({t, t});
  }
  return out;
}

// Per-row relative error, ||a_i - b_i|| / ||b_i|| (b_i = 0 counts as 1).
torch::Tensor row_rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor da = a.to(torch::kFloat64), db = b.to(torch::kFloat64);
  const torch::Tensor norm = db.norm(2, 1);
  return (da - db).norm(2, 1) / torch::where(norm > 0, norm, torch::ones_like(norm));
}

}  // namespace

torch::Tensor flipped_rows(const torch::Tensor& experts, const torch::Tensor& ref_experts) {
  return by_expert(experts, {}).first.ne(by_expert(ref_experts, {}).first).any(1);
}

const std::vector<OpPiece>& pieces_of(const std::vector<std::vector<OpPiece>>& pieces, const std::string& op) {
  const auto& ops = capture_ops();
  return pieces.at(size_t(std::find(ops.begin(), ops.end(), op) - ops.begin()));
}

std::vector<std::vector<OpPiece>> gather_capture(RankContext& ctx, const LayerCapture& capture) {
  const torch::Device device = ctx.device();
  Communicator& world = ctx.world();
  const int n_ranks = ctx.world_size();
  std::vector<std::vector<OpPiece>> out;
  for (const std::string& op : capture_ops()) {
    const OpPiece* p = capture.find(op);
    const int64_t n = p ? p->rows.size(0) : 0, c = p ? p->rows.size(1) : 0, off = p ? p->col_offset : 0;
    // Sizes travel as float32 (the collectives move floating point); exact below 2^24.
    torch::Tensor head = f32_on(torch::tensor({float(n), float(c), float(off)}).view({1, 3}), device);
    torch::Tensor heads = world.all_gather(head).to(torch::kCPU).to(torch::kInt64);
    std::vector<int64_t> data_rows, token_rows;
    for (int r = 0; r < n_ranks; ++r) {
      data_rows.push_back(heads[r][0].item<int64_t>() * heads[r][1].item<int64_t>());
      token_rows.push_back(heads[r][0].item<int64_t>());
    }
    torch::Tensor data = p ? f32_on(p->rows, device).view({-1, 1}) : torch::zeros({0, 1}, torch::TensorOptions().device(device));
    torch::Tensor tokens =
        p ? f32_on(p->tokens, device).view({-1, 1}) : torch::zeros({0, 1}, torch::TensorOptions().device(device));
    torch::Tensor all_data = world.all_gatherv(data, data_rows);
    torch::Tensor all_tokens = world.all_gatherv(tokens, token_rows);
    if (ctx.rank() != 0) continue;
    all_data = all_data.to(torch::kCPU);
    all_tokens = all_tokens.to(torch::kCPU).to(torch::kInt64);
    std::vector<OpPiece> pieces;
    int64_t d0 = 0, t0 = 0;
    for (int r = 0; r < n_ranks; ++r) {
      const int64_t rows = heads[r][0].item<int64_t>(), cols = heads[r][1].item<int64_t>();
      pieces.push_back({all_data.narrow(0, d0, rows * cols).view({rows, cols}), all_tokens.narrow(0, t0, rows).view({rows}),
                        heads[r][2].item<int64_t>()});
      d0 += rows * cols, t0 += rows;
    }
    out.push_back(std::move(pieces));
  }
  return out;
}

std::vector<OpVerdict> compare_capture(int64_t layer, const std::vector<std::vector<OpPiece>>& pieces,
                                       const LayerCapture& reference, const std::map<std::string, double>& thresholds,
                                       double default_threshold, const CaptureRows& rows) {
  const auto& ops = capture_ops();
  auto index_of = [&](const std::string& op) { return size_t(std::find(ops.begin(), ops.end(), op) - ops.begin()); };
  std::vector<OpVerdict> verdicts;
  // Tokens whose experts changed at a near-tie: their MLP output differs by design, so the
  // outputs after routing are compared on the other tokens (the flips are counted in topk_experts).
  torch::Tensor flipped_tokens = torch::zeros({0}, torch::kInt64);
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::string& op = ops[i];
    const OpPiece* ref = reference.find(op);
    int64_t total_rows = 0;
    for (const auto& p : pieces[i]) total_rows += p.rows.size(0);
    if (!ref || total_rows == 0) continue;  // a capture point this layer does not have
    OpVerdict v;
    v.layer = layer;
    v.op = op;
    v.rows = total_rows;
    const bool routing = op == "topk_experts" || op == "topk_weights";
    v.threshold = op == "topk_experts" ? kMaxRoutingFlipFraction
                                       : (thresholds.count(op) ? thresholds.at(op) : default_threshold);
    std::vector<torch::Tensor> all_a, all_b;
    std::vector<int64_t> bad_tokens;
    std::vector<RowPiece> row_pieces;
    for (size_t r = 0; r < pieces[i].size(); ++r) {
      const OpPiece& piece = pieces[i][r];
      if (piece.rows.size(0) == 0) continue;
      torch::Tensor a = piece.rows, b = reference_rows(*ref, piece);
      torch::Tensor keep = torch::ones({a.size(0)}, torch::kBool);
      torch::Tensor own = piece.rows;  // the piece's rows laid out as the reference's (topk_weights: by expert)
      if (routing) {
        // Routing rows compare by expert set; weights only where the set is the same.
        const OpPiece& experts = pieces[index_of("topk_experts")][r];
        torch::Tensor ref_experts = reference_rows(*reference.find("topk_experts"), experts);
        torch::Tensor flipped = flipped_rows(experts.rows, ref_experts);
        v.flips += flipped.sum().item<int64_t>();
        keep = flipped.logical_not();
        if (op == "topk_experts") {
          flipped_tokens = torch::cat({flipped_tokens, piece.tokens.index({flipped}).to(torch::kInt64)});
          if (flipped.to(torch::kFloat64).mean().item<double>() > v.threshold) v.ranks.push_back(int(r));
          for (int64_t t : as_vector(piece.tokens.index({flipped}))) bad_tokens.push_back(t);
          continue;
        }
        own = by_expert(experts.rows, a).second;
        a = own.index({keep});
        b = by_expert(ref_experts, b).second.index({keep});
      } else if ((op == "mlp_out" || op == "layer_out") && flipped_tokens.numel() > 0) {
        keep = torch::isin(piece.tokens, flipped_tokens).logical_not();
        a = a.index({keep});
        b = b.index({keep});
      }
      if (rows.exact) {
        torch::Tensor judged = keep;
        if (rows.left_out.defined()) judged = judged & rows.left_out.index_select(0, piece.tokens).logical_not();
        row_pieces.push_back({own, piece.tokens, piece.col_offset, int(r), judged});
      }
      if (a.size(0) == 0) continue;
      const double rel = compare_tensors(a, b).rel_l2;
      if (!(rel < v.threshold)) v.ranks.push_back(int(r));
      torch::Tensor row_bad = row_rel_err(a, b).ge(v.threshold);
      torch::Tensor kept_tokens = piece.tokens.index({keep});
      for (int64_t t : as_vector(kept_tokens.index({row_bad}))) bad_tokens.push_back(t);
      all_a.push_back(a.reshape({-1}));
      all_b.push_back(b.reshape({-1}));
    }
    if (op == "topk_experts") {
      v.diff.rel_l2 = double(v.flips) / double(total_rows);
      v.diff.cosine = 1 - v.diff.rel_l2;
      v.pass = v.diff.rel_l2 <= v.threshold;
    } else if (!all_a.empty()) {
      v.diff = compare_tensors(torch::cat(all_a), torch::cat(all_b));
      v.pass = v.diff.finite && v.diff.rel_l2 < v.threshold;
    }
    const bool global_pass = v.pass;
    if (rows.exact && rows.exact->find(op) && op != "topk_experts") {
      torch::Tensor low = ref->rows, exact = rows.exact->find(op)->rows;
      if (op == "topk_weights") std::tie(low, exact) = weights_by_expert(reference, *rows.exact);
      v.row = judge_rows(op, row_pieces, low, exact, rows.seq_lens);
      v.pass = v.pass && v.row.pass();
    }
    if (!v.pass) {
      // Where it fails: the pieces and rows past the total's threshold, and the rows past their own bound.
      if (global_pass) v.ranks.clear(), bad_tokens.clear();
      bad_tokens.insert(bad_tokens.end(), v.row.past_tokens.begin(), v.row.past_tokens.end());
      for (int r : v.row.past_ranks)
        if (std::find(v.ranks.begin(), v.ranks.end(), r) == v.ranks.end()) v.ranks.push_back(r);
      std::sort(v.ranks.begin(), v.ranks.end());
      v.token_ranges = ranges_of(bad_tokens);
    } else {
      v.ranks.clear();
    }
    verdicts.push_back(std::move(v));
  }
  return verdicts;
}

torch::Tensor flipped_tokens(const std::vector<OpPiece>& experts, const torch::Tensor& reference_experts,
                             int64_t total) {
  torch::Tensor flipped = torch::zeros({total}, torch::kBool);
  if (!reference_experts.defined()) return flipped;
  for (const OpPiece& p : experts) {
    if (p.rows.size(0) == 0) continue;
    const torch::Tensor ref = reference_experts.index_select(0, p.tokens.to(reference_experts.device())).to(torch::kCPU);
    const torch::Tensor differs = flipped_rows(p.rows, ref.to(p.rows.scalar_type()));
    flipped.index_fill_(0, p.tokens.index({differs}), true);
  }
  return flipped;
}

std::map<std::string, double> capture_noise_floor(const LayerCapture& low, const LayerCapture& exact) {
  std::map<std::string, double> floor;
  for (const std::string& op : capture_ops()) {
    const OpPiece* a = low.find(op);
    const OpPiece* b = exact.find(op);
    if (!a || !b || op == "topk_experts") continue;
    torch::Tensor x = a->rows.to(torch::kCPU), y = b->rows.to(torch::kCPU);
    if (op == "topk_weights") {
      torch::Tensor ea = low.find("topk_experts")->rows.to(torch::kCPU), eb = exact.find("topk_experts")->rows.to(torch::kCPU);
      torch::Tensor same = flipped_rows(ea, eb).logical_not();
      x = by_expert(ea, x).second.index({same});
      y = by_expert(eb, y).second.index({same});
    }
    if ((op == "mlp_out" || op == "layer_out") && low.find("topk_experts") && exact.find("topk_experts")) {
      // As in compare_capture: tokens whose experts flipped are not part of the comparison.
      torch::Tensor same = flipped_rows(low.find("topk_experts")->rows.to(torch::kCPU),
                                        exact.find("topk_experts")->rows.to(torch::kCPU)).logical_not();
      x = x.index({same});
      y = y.index({same});
    }
    floor[op] = compare_tensors(x, y).rel_l2;
  }
  return floor;
}

std::string describe(const OpVerdict& v) {
  std::ostringstream out;
  out << "layer " << v.layer << ", op " << v.op << ", ranks";
  for (size_t i = 0; i < v.ranks.size(); ++i) out << (i ? "," : " ") << v.ranks[i];
  if (v.ranks.empty()) out << " (all pieces within; only the total)";
  out << ", tokens";
  const size_t shown = std::min<size_t>(v.token_ranges.size(), 6);
  for (size_t i = 0; i < shown; ++i) {
    const auto& [a, b] = v.token_ranges[i];
    out << (i ? "," : " ") << a;
    if (b > a) out << "-" << b;
  }
  if (v.token_ranges.size() > shown) out << ",... (" << v.token_ranges.size() << " ranges)";
  const bool total_fails = v.op == "topk_experts" ? v.diff.rel_l2 > v.threshold : !(v.diff.rel_l2 < v.threshold);
  out << std::scientific << std::setprecision(3) << " (" << (v.op == "topk_experts" ? "flip fraction " : "rel_l2 ")
      << v.diff.rel_l2 << (total_fails ? " >= " : " < ") << v.threshold;
  if (v.row.judged && !v.row.pass()) out << "; " << describe(v.row);
  out << ")";
  return out.str();
}

nlohmann::json to_json(const OpVerdict& v) {
  nlohmann::json ranges = nlohmann::json::array();
  for (const auto& [a, b] : v.token_ranges) ranges.push_back({a, b});
  nlohmann::json j = {{"layer", v.layer},         {"op", v.op},         {"max_abs", v.diff.max_abs},
                      {"rel_l2", v.diff.rel_l2}, {"cosine", v.diff.cosine}, {"threshold", v.threshold},
                      {"pass", v.pass},          {"rows", v.rows},     {"flips", v.flips},
                      {"ranks", v.ranks},        {"token_ranges", ranges}};
  if (v.row.judged) j.update(to_json(v.row));
  return j;
}

}  // namespace lb
