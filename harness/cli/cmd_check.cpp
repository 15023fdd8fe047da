#include "harness/cli/cmd_check.h"

#include "harness/cli/flag_checks.h"
#include "harness/cli/run_family.h"
#include "harness/cli/parallel_flags.h"
#include "harness/runtime/device.h"
#include "harness/runtime/progress.h"
#include "layouts/mutations.h"
#include "layouts/row_check.h"
#include "reports/record_file.h"
#include "reports/run_record.h"

#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

namespace lb {

namespace {

struct CheckArgs {
  RunFlags run;  // what reaches the family
  int timeout_s = 600;
  std::string json;
};

int run_check(const CheckArgs& a, const std::vector<std::string>& argv) {
  // Every input is checked, and every layout planned, before any rank starts.
  const std::unique_ptr<RunFamily> family = open_run_family(a.run);
  const std::vector<RunLayout>& layouts = family->layouts();

  // On disk from here on, rewritten after the references and after every layout: a failure
  // (run_ranks passes it on), a timeout or a signal keeps what finished.
  nlohmann::json header = family->record("check", argv, "");
  header["layouts"] = nlohmann::json::array();
  RecordFile record(a.json, header);

  std::vector<CheckedLayout> results;
  std::string device_label;
  const auto start = std::chrono::steady_clock::now();
  run_ranks(family->backend(), family->ranks(), [&](RankContext& ctx) {
    if (ctx.rank() == 0) device_label = device_name(ctx.device());
    const std::unique_ptr<RankCheck> check = family->start_check(ctx, start);
    if (ctx.rank() == 0)
      record.update([&](nlohmann::json& r) {
        r["device"] = device_label;
        r.update(check->record_fields());
      });
    ctx.quiesce();  // the references are done (and their memory released) before any layout
    std::optional<Progress> progress;
    if (ctx.rank() == 0) progress.emplace("check: layouts", int64_t(layouts.size()));
    for (size_t i = 0; i < layouts.size(); ++i) {
      CheckedLayout c = check->check(i);
      ctx.quiesce();  // every rank has freed the layout before the next one's collectives
      if (progress) progress->step(layouts[i].name);
      if (ctx.rank() == 0) {
        if (progress) progress->clear();
        std::cout << c.text << "  done at " << seconds_since(start) << " s (setup included)\n" << std::flush;
        record.update([&](nlohmann::json& r) {
          r["layouts"].push_back(c.record);
          r.update(check->record_fields());  // fields that sum over the layouts so far
        });
        results.push_back(std::move(c));
      }
    }
  }, std::chrono::seconds(a.timeout_s));
  if (results.empty()) return 0;  // not rank 0 of an mpirun launch

  bool pass = true;
  for (const auto& r : results) pass = pass && r.pass;
  std::cout << (pass ? "all layouts match the reference" : "DIVERGENCE: see the rows marked above") << " ("
            << results.size() << " layout(s), " << family->check_summary() << ")\n";
  record.update([&](nlohmann::json& r) { r["pass"] = pass; });
  record.finish();
  if (record.writes()) std::cout << "record written to " << a.json << "\n";
  return pass ? 0 : 1;
}

}  // namespace

std::function<int()> add_check_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto a = std::make_shared<CheckArgs>();
  RunFlags& run = a->run;
  run.subcommand = "check";
  run.layout = "all";
  run.backend = to_string(default_backend());
  run.lengths = "37,9,64,18";  // 128 tokens: divides by 2, 4, 8 for round-robin CP
  run.dtype = "f32";
  CLI::App* sub = app.add_subcommand("check", "Run a layout (or all) and the single-device reference on the same "
                                              "weights and tokens; compare every layer in original token order");
  run.sub = sub;
  sub->add_option("--model", run.model, "Checkpoint directory or preset; DeepSeek-V4 (deepseek-v4-flash, tiny-deepseek-v4, a deepseek_v4 checkpoint) runs its own layouts tp and cp-fused-moe on one sequence in f32")->required();
  sub->add_option("--layout", run.layout, "Layout names (comma-separated), or all (every layout and baseline)");
  sub->add_option("--backend", run.backend, "cpu (CPU ranks) or nccl (one GPU per rank); default nccl in CUDA builds");
  sub->add_option("--ranks,--gpus", run.ranks, "Number of ranks")->required()->check(positive_integer());
  add_parallel_flags(*sub, run.parallel);
  sub->add_option("--layers", run.layers, "Run only the first N decoder layers")->check(positive_integer());
  sub->add_option("--tokens", run.tokens, "One random sequence of N tokens (instead of --lengths)")
      ->check(positive_integer());
  sub->add_option("--lengths", run.lengths, "Random sequences of these lengths, comma-separated");
  sub->add_option("--dtype", run.dtype, "f32 or bf16 (reference and layout alike)");
  sub->add_option("--kernels", run.kernels, "The layouts' kernels: reference (plain LibTorch) or fused (sorted pairs and grouped GEMMs for the "
                  "MoE experts); the reference keeps the plain path");
  sub->add_option("--seed", run.seed, "Seed of the random weights and tokens")->check(seed_value());
  sub->add_option("--max-rel-l2", run.max_rel_l2,
                  "Verdict threshold on relative L2 per layer (default: 1e-5 in f32; in bf16/f16, 3x the measured "
                  "noise floor of each layer, the low-precision reference against the f32 reference)")
      ->check(positive_number());
  sub->add_option("--timeout", a->timeout_s, "Seconds before a collective that does not finish is an error")
      ->check(positive_integer());
  sub->add_option("--capture", run.capture,
                  "none, or op: also compare every capture point inside each layer (post-norm input, q, k/latent, "
                  "attention output, o_proj, residual, router logits, top-k experts and weights, MLP output) and "
                  "name the first (layer, op) that diverges with its ranks and token ranges");
  std::string mutations;
  for (const auto& m : all_mutations()) mutations += (mutations.empty() ? "" : ", ") + m.name;
  sub->add_option("--mutation", run.mutation,
                  "Plant a known layout bug, to test the oracle (" + mutations + ")");
  sub->add_option("--decode-steps", run.decode_steps,
                  "After the prefill, N decode steps through the reference and each layout on the reference's greedy "
                  "tokens, every layer of every step compared (bf16/f16: 3x the decode noise floor per layer)");
  sub->add_option("--row-verdicts", run.row_verdicts,
                  "on or off (default on): in bf16/f16 with a measured noise floor, also judge every row (token) of "
                  "each layer output and capture point against its own bound, " +
                      std::to_string(int(kRowFloorFactor)) + " x max(the row's noise floor, the median row's), so that a bug "
                      "on a few tokens of a long batch is not averaged away");
  sub->add_option("--reference-dump", run.reference_dump,
                  "Judge the layout against the layer outputs of a `layoutbench reference --dump` file (same model, "
                  "weights, --seed and tokens; checked) instead of computing the reference here, for models whose "
                  "reference does not fit next to the layout")
      ->check(input_file());
  sub->add_option("--json", a->json, "Write the per-layer verdicts and the run's command, commit and device")
      ->check(output_file());
  return [a, argv] { return run_check(*a, argv); };
}

}  // namespace lb
