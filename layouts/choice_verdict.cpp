#include "layouts/choice_verdict.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace lb {

namespace {

// What one rank's rows contribute to the distance between an output and the reference: sums over
// its elements, so that rank 0 can combine every rank's into one verdict per output, and the rows
// past the threshold on their own.
enum Sum : int64_t { kDiff2, kRef2, kDot, kAct2, kMaxAbs, kNonFinite, kRowsPast, kWorstRow, kWorstRowPosition, kSums };

// Rows at a time, in float64.
torch::Tensor partial_sums(const torch::Tensor& actual, const torch::Tensor& reference, const torch::Tensor& positions,
                           double threshold) {
  const int64_t rows = actual.size(0), row = std::max<int64_t>(1, actual.numel() / std::max<int64_t>(1, rows));
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 24) / row);
  std::vector<double> s(kSums, 0.0);
  s[kWorstRowPosition] = -1;
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t n = std::min(block, rows - r);
    const torch::Tensor a = actual.narrow(0, r, n).reshape({n, -1}).to(torch::kFloat64);
    const torch::Tensor b = reference.narrow(0, r, n).reshape({n, -1}).to(torch::kFloat64);
    const torch::Tensor d = a - b;
    const torch::Tensor row_rel = (d.square().sum(1) / b.square().sum(1).clamp_min(1e-300)).sqrt().cpu();
    s[kDiff2] += d.square().sum().item<double>();
    s[kRef2] += b.square().sum().item<double>();
    s[kDot] += (a * b).sum().item<double>();
    s[kAct2] += a.square().sum().item<double>();
    s[kMaxAbs] = std::max(s[kMaxAbs], d.abs().max().item<double>());
    s[kNonFinite] += ((~torch::isfinite(a)).sum() + (~torch::isfinite(b)).sum()).item<double>();
    s[kRowsPast] += (row_rel >= threshold).sum().item<double>();
    const auto worst = row_rel.max(0);
    if (std::get<0>(worst).item<double>() > s[kWorstRow]) {
      s[kWorstRow] = std::get<0>(worst).item<double>();
      s[kWorstRowPosition] = double(positions[r + std::get<1>(worst).item<int64_t>()].item<int64_t>());
    }
  }
  return torch::tensor(s, torch::kFloat64).to(actual.device());
}

OutputVerdict combine(const std::string& output, const torch::Tensor& per_rank, int64_t rows, double threshold) {
  // per_rank: [ranks, kSums] of one output.
  const torch::Tensor s = per_rank.cpu();
  auto total = [&](int64_t k) { return s.select(1, k).sum().item<double>(); };
  OutputVerdict v;
  v.output = output;
  v.rel_l2 = std::sqrt(total(kDiff2) / std::max(total(kRef2), 1e-300));
  v.cosine = total(kDot) / std::sqrt(std::max(total(kRef2) * total(kAct2), 1e-300));
  v.max_abs = s.select(1, kMaxAbs).max().item<double>();
  v.finite = total(kNonFinite) == 0;
  v.pass = v.finite && v.rel_l2 < threshold;
  v.rows = rows;
  v.rows_past = int64_t(total(kRowsPast));
  const int64_t worst_rank = s.select(1, kWorstRow).argmax().item<int64_t>();
  v.worst_row = s[worst_rank][kWorstRow].item<double>();
  v.worst_row_position = int64_t(s[worst_rank][kWorstRowPosition].item<double>());
  return v;
}

nlohmann::json to_json(const OutputVerdict& v, double threshold) {
  return {{"output", v.output},
          {"max_abs", v.max_abs},
          {"rel_l2", v.rel_l2},
          {"cosine", v.cosine},
          {"finite", v.finite},
          {"threshold", threshold},
          {"pass", v.pass},
          {"rows", v.rows},
          {"rows_past_threshold", v.rows_past},
          {"worst_row_rel_l2", v.worst_row},
          {"worst_row_position", v.worst_row_position}};
}

nlohmann::json outputs_json(const std::vector<OutputVerdict>& outputs, int64_t num_layers, double threshold) {
  nlohmann::json layers = nlohmann::json::array(), head = nlohmann::json::array();
  for (size_t k = 0; k < outputs.size(); ++k) {
    nlohmann::json j = to_json(outputs[k], threshold);
    if (int64_t(k) < num_layers) {
      j["layer"] = int64_t(k);
      layers.push_back(j);
    } else {
      head.push_back(j);
    }
  }
  return {{"layers", layers}, {"head", head}};
}

}  // namespace

std::vector<OutputVerdict> compare_rows(Communicator& world, const std::vector<std::string>& names,
                                        const std::vector<torch::Tensor>& actual,
                                        const std::vector<torch::Tensor>& reference, const torch::Tensor& positions,
                                        double threshold) {
  const torch::Tensor cpu_positions = positions.cpu();
  std::vector<torch::Tensor> sums;
  for (size_t k = 0; k < names.size(); ++k)
    sums.push_back(partial_sums(actual[k], reference[k].index_select(0, positions), cpu_positions, threshold));
  // all_gather copies bytes, so the float64 sums travel exactly as pairs of float32.
  const torch::Tensor mine = torch::stack(sums).contiguous().view(torch::kFloat32);
  const torch::Tensor all = world.all_gather(mine.unsqueeze(0)).contiguous().view(torch::kFloat64);
  const torch::Tensor per_rank = all.view({world.size(), int64_t(names.size()), kSums});
  std::vector<OutputVerdict> verdicts;
  for (size_t k = 0; k < names.size(); ++k)
    verdicts.push_back(combine(names[k], per_rank.select(1, int64_t(k)), positions.size(0) * world.size(), threshold));
  return verdicts;
}

ChoiceVerdict two_pass_verdict(std::vector<OutputVerdict> on_reference_choices,
                               std::vector<OutputVerdict> on_own_choices) {
  ChoiceVerdict c;
  c.outputs = std::move(on_reference_choices);
  c.own_outputs = std::move(on_own_choices);
  c.pass = true;
  for (const OutputVerdict& v : c.outputs) c.pass = c.pass && v.pass;
  for (const OutputVerdict& v : c.own_outputs)
    if (v.rows_past > 0 || !v.finite) {
      c.own_first_moved = v.output;
      c.pass = c.pass && v.finite && double(v.rows_past) <= kMaxOwnChoiceRowShare * double(v.rows);
      break;
    }
  return c;
}

std::string format_choice_verdict(const ChoiceVerdict& c, double threshold, const std::string& choices) {
  std::ostringstream out;
  out << std::left << std::setw(75) << "  on the reference's " + choices << "| on its own choices\n" << std::right
      << "  output          max_abs      rel_l2      cosine   threshold  verdict     |     rel_l2  rows past  worst row "
         "(position)\n";
  for (size_t k = 0; k < c.outputs.size(); ++k) {
    const OutputVerdict& v = c.outputs[k];
    const OutputVerdict& own = c.own_outputs[k];
    out << "  " << std::left << std::setw(11) << v.output << std::right << std::scientific << std::setprecision(3)
        << std::setw(12) << v.max_abs << std::setw(12) << v.rel_l2 << std::fixed << std::setprecision(7)
        << std::setw(12) << v.cosine << std::scientific << std::setprecision(2) << std::setw(12) << threshold << "  "
        << std::left << std::setw(10) << (v.pass ? "ok" : (v.finite ? "DIVERGES" : "NOT FINITE")) << std::right
        << "  |" << std::setprecision(3) << std::setw(11) << own.rel_l2 << std::setw(6) << own.rows_past << "/"
        << std::left << std::setw(6) << own.rows << std::right << std::setprecision(2) << std::setw(10)
        << own.worst_row << " (" << own.worst_row_position << ")\n";
  }
  for (const OutputVerdict& v : c.outputs)
    if (!v.pass) {
      out << "  first divergence: " << v.output << "\n";
      break;
    }
  if (!c.own_first_moved.empty()) {
    for (const OutputVerdict& own : c.own_outputs)
      if (own.output == c.own_first_moved)
        out << "  on its own choices, rows first move at " << own.output << ": " << own.rows_past << " of " << own.rows
            << (double(own.rows_past) <= kMaxOwnChoiceRowShare * double(own.rows)
                    ? " (near-tie flips: at most 1% of the rows may move)"
                    : " (MORE THAN 1% OF THE ROWS: not near-tie flips)")
            << "\n";
  }
  return out.str();
}

nlohmann::json to_json(const ChoiceVerdict& c, int64_t num_layers, double threshold, const std::string& choices) {
  nlohmann::json j = outputs_json(c.outputs, num_layers, threshold);
  nlohmann::json own = outputs_json(c.own_outputs, num_layers, threshold);
  own["first_moved"] = c.own_first_moved;
  own["max_row_share"] = kMaxOwnChoiceRowShare;
  j["own_choices"] = own;
  j["choices"] = "the reference's " + choices;
  j["pass"] = c.pass;
  return j;
}

}  // namespace lb
