// `layoutbench check` on DeepSeek-V4 (harness/cli/deepseek_v4_run.h): each layout against the
// single-rank reference on the same weights and tokens, every layer's residual streams, the final
// norm and the logits, over every rank's rows at their original positions. Each layout runs twice:
// on the reference's indexer picks and experts (the verdict on its continuous math), and on its
// own, where a top-k near-tie may flip one way here and the other way in the reference.
#include "datasets/token_input.h"
#include "harness/cli/deepseek_v4_run.h"
#include "harness/runtime/device.h"
#include "harness/runtime/errors.h"
#include "harness/runtime/file_util.h"
#include "harness/runtime/launch.h"
#include "oracles/compare.h"
#include "reports/run_record.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace lb {

namespace {

// What one rank's rows contribute to the distance between a layout output and the reference:
// sums over its elements, so that rank 0 can combine every rank's into one verdict per output, and
// the rows past the threshold on their own (a wrong layout moves most rows; a top-k pick that
// flips on a near-tie moves a few).
enum Sum : int64_t { kDiff2, kRef2, kDot, kAct2, kMaxAbs, kNonFinite, kRowsPast, kWorstRow, kWorstRowPosition, kSums };

// Rows at a time, in float64: V4-Flash's logits of 4096 tokens are 4 GB in float64 whole.
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

struct OutputVerdict {
  std::string output;  // "layer 3", "final_norm", "logits"
  double max_abs = 0, rel_l2 = 0, cosine = 0;
  bool finite = true, pass = false;
  int64_t rows = 0, rows_past = 0;  // over every rank's rows; rows past the threshold on their own
  double worst_row = 0;             // the largest relative L2 of one row
  int64_t worst_row_position = -1;  // its token's position in the sequence
};

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

// A run on its own choices passes when, at the first output where rows move past the threshold,
// at most this share of the rows did: a top-k pick that flips on a near-tie moves single rows (and,
// a layer later, the rows that attend to them); choosing from wrong inputs moves most rows.
constexpr double kMaxOwnChoiceRowShare = 0.01;

struct V4LayoutCheck {
  V4LayoutChoice layout;
  std::vector<OutputVerdict> outputs;      // on the reference's choices: the verdict's numbers
  std::vector<OutputVerdict> own_outputs;  // on the layout's own choices
  std::string own_first_moved;             // the first output with rows past the threshold there ("" for none)
  bool pass = false;
  double layout_ms = 0;                    // own choices
  std::vector<CollectiveRecord> records;  // rank 0's, own choices
  int64_t rows_per_rank = 0;
};

std::string format(const V4LayoutCheck& c, double threshold) {
  std::ostringstream out;
  out << "layout " << c.layout.name << (c.layout.replaces.empty() ? "" : " (replaces " + c.layout.replaces + ")")
      << ": deepseek_v4 " << to_string(c.layout.layout) << ", " << c.rows_per_rank << " rows per rank\n"
      << "  on the reference's indexer picks and experts                             | on its own choices\n"
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
  out << std::fixed << std::setprecision(2) << "  layers and head took " << c.layout_ms << " ms on rank 0 (each "
      << "collective timed), " << c.records.size() << " collectives\n";
  return out.str();
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

// In the other checks' shape, which `report` and `diff` read: "layers" (each with its index) and,
// beside them, "head" (the final norm and the logits).
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

nlohmann::json to_json(const V4LayoutCheck& c, int64_t num_layers, double threshold) {
  nlohmann::json j = outputs_json(c.outputs, num_layers, threshold);
  nlohmann::json own = outputs_json(c.own_outputs, num_layers, threshold);
  own["first_moved"] = c.own_first_moved;
  own["max_row_share"] = kMaxOwnChoiceRowShare;
  j.update({{"layout", c.layout.name},
            {"v4_layout", to_string(c.layout.layout)},
            {"replaces", c.layout.replaces},
            {"rows_per_rank", c.rows_per_rank},
            {"pass", c.pass},
            {"choices", "the reference's indexer picks and experts"},
            {"own_choices", own},
            {"layout_ms", c.layout_ms},
            {"collectives", summarize_collectives(c.records)}});
  return j;
}

}  // namespace

int run_check_deepseek_v4(const V4RunArgs& a, const std::vector<std::string>& argv) {
  // Every input is checked before any rank starts.
  const V4RunPlan plan = plan_v4_run(a);
  const V4Model& model = plan.model;
  const DeepseekV4Config& config = model.config;
  const Backend backend = plan.backend;
  const int64_t tokens = plan.tokens;
  const std::vector<V4LayoutChoice>& layouts = plan.layouts;
  const TokenBatch& batch = plan.batch;
  const Mutation mutation = find_mutation(a.mutation);
  const double threshold = a.max_rel_l2 > 0 ? a.max_rel_l2 : kFp32MaxRelL2;
  std::vector<std::string> output_names;
  for (int64_t l = 0; l < config.num_layers; ++l) output_names.push_back("layer " + std::to_string(l));
  output_names.push_back("final_norm");
  output_names.push_back("logits");

  std::vector<V4LayoutCheck> results;
  std::string device_label;
  double reference_ms = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  run_ranks(backend, a.ranks, [&](RankContext& ctx) {
    torch::NoGradGuard no_grad;
    const std::map<std::string, torch::Tensor> weights = model.weights(ctx.device());
    const torch::Tensor ids = batch.ids.to(ctx.device());
    // Every rank holds all the weights, so each computes the reference for its own rows' comparison.
    ctx.quiesce();
    const auto t_ref = std::chrono::steady_clock::now();
    DeepseekV4Choices choices;
    const DeepseekV4Output reference = deepseek_v4_forward(config, weights, ids, &choices);
    synchronize(ctx.device());
    if (ctx.rank() == 0) {
      device_label = device_name(ctx.device());
      reference_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_ref).count();
      std::cout << "weights and reference ready at " << std::fixed << std::setprecision(1) << elapsed_s() << " s\n"
                << std::flush;
    }
    ctx.quiesce();
    Communicator& world = ctx.world();
    // One layout run compared with the reference: per output, every rank's sums gathered on rank 0.
    auto compare = [&](const DeepseekV4LayoutOutput& out) {
      std::vector<torch::Tensor> sums;
      const torch::Tensor positions = out.tokens.cpu();
      auto sums_of = [&](const torch::Tensor& actual, const torch::Tensor& ref) {
        return partial_sums(actual, ref.index_select(0, out.tokens), positions, threshold);
      };
      for (int64_t i = 0; i < config.num_layers; ++i)
        sums.push_back(sums_of(out.layers[size_t(i)], reference.layers[size_t(i)]));
      sums.push_back(sums_of(out.final_norm, reference.final_norm));
      sums.push_back(sums_of(out.logits, reference.logits));
      // all_gather copies bytes, so the float64 sums travel exactly as pairs of float32.
      const torch::Tensor mine = torch::stack(sums).contiguous().view(torch::kFloat32);
      const torch::Tensor all = world.all_gather(mine.unsqueeze(0)).contiguous().view(torch::kFloat64);
      std::vector<OutputVerdict> verdicts;
      const torch::Tensor per_rank = all.view({ctx.world_size(), int64_t(output_names.size()), kSums});
      for (size_t k = 0; k < output_names.size(); ++k)
        verdicts.push_back(
            combine(output_names[k], per_rank.select(1, int64_t(k)), out.tokens.size(0) * ctx.world_size(), threshold));
      return verdicts;
    };
    for (const V4LayoutChoice& l : layouts) {
      V4LayoutCheck c{l, {}, {}, "", true, 0, {}, 0};
      // On the reference's choices: the continuous math, judged at the fp32 threshold.
      c.outputs = compare(deepseek_v4_forward_layout(config, weights, ids, ctx, l.layout, mutation, &choices));
      ctx.quiesce();
      // On its own choices, timed.
      world.barrier();
      world.clear_records();
      world.set_timing(true);
      const auto t0 = std::chrono::steady_clock::now();
      const DeepseekV4LayoutOutput own = deepseek_v4_forward_layout(config, weights, ids, ctx, l.layout, mutation);
      synchronize(ctx.device());
      c.layout_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      world.set_timing(false);
      c.records = world.records();
      c.rows_per_rank = own.tokens.size(0);
      c.own_outputs = compare(own);
      if (ctx.rank() == 0) {
        for (const OutputVerdict& v : c.outputs) c.pass = c.pass && v.pass;
        for (const OutputVerdict& v : c.own_outputs)
          if (v.rows_past > 0 || !v.finite) {
            c.own_first_moved = v.output;
            c.pass = c.pass && v.finite && double(v.rows_past) <= kMaxOwnChoiceRowShare * double(v.rows);
            break;
          }
        std::cout << format(c, threshold) << "  done at " << std::fixed << std::setprecision(1) << elapsed_s()
                  << " s\n" << std::flush;
        results.push_back(std::move(c));
      }
      ctx.quiesce();
    }
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty()) return 0;  // not rank 0 of an mpirun launch

  bool pass = true;
  for (const auto& r : results) pass = pass && r.pass;
  std::cout << (pass ? "all layouts match the reference" : "DIVERGENCE: see the rows marked above") << " ("
            << results.size() << " layout(s), deepseek_v4, " << config.num_layers << " layers, " << tokens
            << " tokens, f32)\n";
  if (!a.json.empty()) {
    nlohmann::json record = v4_run_record("check", argv, device_label, model, to_string(backend), a.ranks, tokens);
    record["threshold"] = threshold;
    record["reference_ms"] = reference_ms;
    if (mutation != Mutation::None) record["mutation"] = a.mutation;
    record["pass"] = pass;
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : results) j.push_back(to_json(r, config.num_layers, threshold));
    record["layouts"] = j;
    write_json(a.json, record);
    std::cout << "record written to " << a.json << "\n";
  }
  return pass ? 0 : 1;
}

}  // namespace lb
