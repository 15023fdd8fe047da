#include "harness/cli/layout_selection.h"

#include "harness/runtime/errors.h"

namespace lb {

std::vector<std::string> comma_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::vector<SelectedLayout> select_layouts(const std::string& names, int ranks, const ModelConfig& config,
                                           const ParallelFlags& flags, const CLI::App& sub) {
  std::vector<const LayoutSpec*> specs;
  if (names == "all")
    for (const LayoutSpec& l : all_layouts()) specs.push_back(&l);
  else
    for (const std::string& name : comma_list(names)) specs.push_back(&find_layout(name));
  // An empty list would run nothing and still exit 0, as if every layout had passed.
  if (specs.empty()) throw InputError("--layout '" + names + "': no layout named (give names, comma-separated, or all)");
  auto overrides = [&](ParallelConfig& p) {
    // A layout whose dense MLP runs on the attention TP group keeps doing so when the flags
    // change attn_tp (through --dp or --attn-cp).
    const bool dense_follows_attn_tp = p.moe_dense_tp && *p.moe_dense_tp == p.attn_tp() && *p.moe_dense_tp > 1;
    if (sub.count("--dp")) p.dp = flags.dp;
    if (sub.count("--attn-cp")) p.attn_cp = flags.attn_cp;
    if (sub.count("--moe-dp")) p.moe_dp = flags.moe_dp;
    if (sub.count("--moe-ep")) p.moe_ep = flags.moe_ep;
    if (sub.count("--nnodes")) p.nnodes = flags.nnodes;
    if (sub.count("--moe-dense-tp")) p.moe_dense_tp = flags.config(ranks).moe_dense_tp;
    else if (dense_follows_attn_tp) p.moe_dense_tp = p.attn_tp();
    if (sub.count("--tp") && flags.tp != ranks)
      throw InputError("--tp " + std::to_string(flags.tp) + " must equal the rank count " + std::to_string(ranks));
  };
  std::vector<SelectedLayout> out;
  for (const LayoutSpec* l : specs) out.push_back({l, layout_parallel(*l, ranks, config, overrides)});
  return out;
}

}  // namespace lb
