#include "layouts/row_check.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>

namespace lb {

namespace {

template <typename T>
std::vector<T> as_vector(const torch::Tensor& t, torch::ScalarType type) {
  const torch::Tensor c = t.to(torch::kCPU, type).contiguous().view({-1});
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

// (sequence, position) of an original token index in the packed batch.
std::pair<int64_t, int64_t> sequence_position(const std::vector<int64_t>& seq_lens, int64_t token) {
  int64_t start = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    if (token < start + seq_lens[s]) return {int64_t(s), token - start};
    start += seq_lens[s];
  }
  return {-1, token};
}

void add_rank(std::vector<int>& ranks, int r) {
  if (std::find(ranks.begin(), ranks.end(), r) == ranks.end()) ranks.push_back(r);
}

}  // namespace

RowVerdict judge_rows(const std::string& op, const std::vector<RowPiece>& pieces, const torch::Tensor& low,
                      const torch::Tensor& exact, const std::vector<int64_t>& seq_lens) {
  RowVerdict v;
  v.judged = true;
  // Row norms in float64 where the reference is (one pass of whole-tensor ops; a piece gathered
  // to the CPU travels once, the reference's rows stay); only the norms travel to the CPU, where
  // the rule is applied.
  const torch::Device device = low.device();
  std::vector<torch::Tensor> norms, errors, floors, tokens, ranks, judged;
  for (const RowPiece& p : pieces) {
    const int64_t n = p.rows.size(0);
    if (n == 0) continue;
    const torch::Tensor index = p.tokens.to(device);
    auto same_rows = [&](const torch::Tensor& full) {
      return full.to(device).index_select(0, index).narrow(1, p.col_offset, p.rows.size(1)).to(torch::kFloat64);
    };
    const torch::Tensor r = same_rows(low), x = same_rows(exact), l = p.rows.to(device, torch::kFloat64);
    norms.push_back(r.norm(2, 1).cpu());
    errors.push_back((l - r).norm(2, 1).cpu());
    floors.push_back((r - x).norm(2, 1).cpu());
    tokens.push_back(p.tokens.to(torch::kCPU, torch::kInt64));
    ranks.push_back(torch::full({n}, int64_t(p.rank), torch::kInt64));
    judged.push_back(p.judged.defined() ? p.judged.to(torch::kCPU, torch::kBool) : torch::ones({n}, torch::kBool));
  }
  if (norms.empty()) return v;
  const torch::Tensor norm = torch::cat(norms);
  const torch::Tensor scale = torch::maximum(norm, norm.median() * kNearZeroRowFraction).clamp_min(DBL_MIN);
  torch::Tensor floor = torch::cat(floors) / scale;
  double median = floor.nanmedian().item<double>();
  if (!std::isfinite(median)) median = 0;  // no row has a floor of its own
  const torch::Tensor keep = torch::cat(judged);
  floor = floor.index({keep});
  const torch::Tensor error = (torch::cat(errors) / scale).index({keep});
  const torch::Tensor token = torch::cat(tokens).index({keep});
  const torch::Tensor rank = torch::cat(ranks).index({keep});
  const torch::Tensor median_floor = torch::full_like(floor, std::max(median, kMinRowFloor));
  const torch::Tensor bound = kRowFloorFactor * torch::fmax(floor, median_floor);
  const double inf = std::numeric_limits<double>::infinity();
  const torch::Tensor ratio = torch::nan_to_num(error / bound, inf, inf);  // a non-finite row is past any bound
  v.rows = ratio.numel();
  if (v.rows == 0) return v;
  const torch::Tensor past = ratio.gt(1);
  v.past_bound = past.sum().item<int64_t>();
  v.worst_ratio = ratio.max().item<double>();
  v.past_tokens = as_vector<int64_t>(token.index({past}), torch::kInt64);
  for (int64_t r : as_vector<int64_t>(rank.index({past}), torch::kInt64)) add_rank(v.past_ranks, int(r));
  std::sort(v.past_ranks.begin(), v.past_ranks.end());

  // The worst rows, one entry per token: its other ranks' copies join it when past their bound too.
  const auto order = as_vector<int64_t>(std::get<1>(ratio.topk(std::min<int64_t>(v.rows, 64 * kWorstRowsKept))),
                                        torch::kInt64);
  const auto ratios = as_vector<double>(ratio, torch::kFloat64), errs = as_vector<double>(error, torch::kFloat64),
             bounds = as_vector<double>(bound, torch::kFloat64);
  const auto toks = as_vector<int64_t>(token, torch::kInt64), rks = as_vector<int64_t>(rank, torch::kInt64);
  std::map<int64_t, size_t> entry_of;
  for (int64_t i : order) {
    auto it = entry_of.find(toks[i]);
    if (it != entry_of.end()) {
      if (ratios[i] > 1) add_rank(v.worst[it->second].ranks, int(rks[i]));
      continue;
    }
    if (v.worst.size() == kWorstRowsKept) continue;
    WorstRow w;
    w.op = op;
    w.token = toks[i];
    std::tie(w.sequence, w.position) = sequence_position(seq_lens, toks[i]);
    w.ranks = {int(rks[i])};
    w.rel_l2 = errs[i], w.bound = bounds[i], w.ratio = ratios[i];
    entry_of[toks[i]] = v.worst.size();
    v.worst.push_back(w);
  }
  return v;
}

torch::Tensor flip_shadow(const torch::Tensor& flips, const std::vector<int64_t>& seq_lens) {
  torch::Tensor shadow = flips.to(torch::kCPU, torch::kBool).clone();
  for (int64_t t : as_vector<int64_t>(flips.nonzero().view({-1}), torch::kInt64)) {
    const auto [sequence, position] = sequence_position(seq_lens, t);
    const int64_t end = std::min(t - position + seq_lens.at(size_t(sequence)), t + 1 + kFlipShadowRows);
    shadow.narrow(0, t, end - t).fill_(true);
  }
  return shadow;
}

RowVerdict merge(RowVerdict a, const RowVerdict& b) {
  a.judged = a.judged || b.judged;
  a.rows += b.rows;
  a.past_bound += b.past_bound;
  a.worst_ratio = std::max(a.worst_ratio, b.worst_ratio);
  a.worst.insert(a.worst.end(), b.worst.begin(), b.worst.end());
  std::stable_sort(a.worst.begin(), a.worst.end(),
                   [](const WorstRow& x, const WorstRow& y) { return x.ratio > y.ratio; });
  if (a.worst.size() > kWorstRowsKept) a.worst.resize(kWorstRowsKept);
  a.past_tokens.insert(a.past_tokens.end(), b.past_tokens.begin(), b.past_tokens.end());
  for (int r : b.past_ranks) add_rank(a.past_ranks, r);
  std::sort(a.past_ranks.begin(), a.past_ranks.end());
  return a;
}

std::string describe(const RowVerdict& v) {
  std::ostringstream out;
  out << v.past_bound << " of " << v.rows << " rows past their bound (" << kRowFloorFactor
      << " x floor); worst" << std::scientific << std::setprecision(2);
  const size_t shown = v.past_bound > 0 ? v.worst.size() : std::min<size_t>(v.worst.size(), 1);
  for (size_t i = 0; i < shown; ++i) {
    const WorstRow& w = v.worst[i];
    if (w.ratio <= 1 && v.past_bound > 0) break;
    out << (i ? "; " : ": ") << "seq " << w.sequence << " pos " << w.position << " (token " << w.token << ", "
        << w.op << ", ranks";
    for (size_t r = 0; r < w.ranks.size(); ++r) out << (r ? "," : " ") << w.ranks[r];
    out << ") " << w.rel_l2 << " = " << std::fixed << std::setprecision(2) << w.ratio << std::scientific
        << std::setprecision(2) << " x bound";
  }
  return out.str();
}

nlohmann::json to_json(const RowVerdict& v) {
  nlohmann::json worst = nlohmann::json::array();
  for (const WorstRow& w : v.worst)
    worst.push_back({{"op", w.op},         {"token", w.token},   {"sequence", w.sequence}, {"position", w.position},
                     {"ranks", w.ranks},   {"rel_l2", w.rel_l2}, {"bound", w.bound},       {"ratio", w.ratio}});
  return {{"rows_judged", v.rows},
          {"rows_past_bound", v.past_bound},
          {"worst_row_ratio", v.worst_ratio},
          {"worst_rows", worst}};
}

}  // namespace lb
