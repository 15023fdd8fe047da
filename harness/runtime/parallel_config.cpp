#include "harness/runtime/parallel_config.h"

#include "harness/runtime/errors.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace lb {

nlohmann::json ParallelConfig::to_json() const {
  return {{"tp", tp},           {"dp", dp},         {"attn_cp", attn_cp},
          {"attn_tp", attn_tp()}, {"moe_dp", moe_dp}, {"moe_ep", moe_ep},
          {"moe_tp", moe_tp()}, {"moe_dense_tp", moe_dense_tp ? nlohmann::json(*moe_dense_tp) : nlohmann::json()},
          {"nnodes", nnodes}};
}

namespace {

void rule(bool ok, const std::string& message) {
  if (!ok) throw InputError("parallel config: " + message);
}

std::string n(int v) { return std::to_string(v); }

}  // namespace

void validate(const ParallelConfig& p) {
  rule(p.tp >= 1 && p.dp >= 1 && p.attn_cp >= 1 && p.moe_dp >= 1 && p.moe_ep >= 1 && p.nnodes >= 1,
       "every size must be >= 1");
  rule(p.tp % p.nnodes == 0, "tp (" + n(p.tp) + ") must be a multiple of nnodes (" + n(p.nnodes) + ")");
  rule(p.tp % (p.dp * p.attn_cp) == 0, "dp * attn_cp (" + n(p.dp) + " * " + n(p.attn_cp) + ") must divide tp (" +
                                           n(p.tp) + "): attn_tp * attn_cp * dp == tp");
  rule(p.tp % (p.moe_dp * p.moe_ep) == 0, "moe_dp * moe_ep (" + n(p.moe_dp) + " * " + n(p.moe_ep) +
                                              ") must divide tp (" + n(p.tp) + "): moe_dp * moe_ep * moe_tp == tp");
  rule(p.moe_dp == 1 || (p.attn_cp % p.moe_dp == 0 && p.dp == 1),
       "moe_dp (" + n(p.moe_dp) + ") > 1 needs dp == 1 and must divide attn_cp (" + n(p.attn_cp) +
           "): each MoE replica serves whole CP ranks (moe_dp == attn_cp, or moe_dp < attn_cp for MOE_FULL)");
  if (p.moe_dense_tp) {
    const int d = *p.moe_dense_tp;
    rule(d == 1 || d == p.attn_tp(), "moe_dense_tp (" + n(d) + ") must be unset (whole tp group), 1 or attn_tp (" +
                                         n(p.attn_tp()) + ")");
  }
}

ParallelConfig parse_parallel_config(const std::string& spec) {
  ParallelConfig p;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw InputError("parallel config: '" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "moe_dense_tp" && (value == "none" || value == "None")) {
      p.moe_dense_tp.reset();
      continue;
    }
    int v = 0;
    try {
      size_t used = 0;
      v = std::stoi(value, &used);
      if (used != value.size()) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      throw InputError("parallel config: " + key + "='" + value + "' is not an integer");
    }
    if (key == "tp") p.tp = v;
    else if (key == "dp") p.dp = v;
    else if (key == "attn_cp") p.attn_cp = v;
    else if (key == "moe_dp") p.moe_dp = v;
    else if (key == "moe_ep") p.moe_ep = v;
    else if (key == "moe_dense_tp") p.moe_dense_tp = v;
    else if (key == "nnodes") p.nnodes = v;
    else throw InputError("parallel config: unknown key '" + key + "' (tp, dp, attn_cp, moe_dp, moe_ep, moe_dense_tp, nnodes)");
  }
  return p;
}

RankCoords rank_coords(const ParallelConfig& p, int rank) {
  RankCoords c;
  c.attn_tp = rank % p.attn_tp();
  c.attn_cp = (rank / p.attn_tp()) % p.attn_cp;
  c.attn_dp = rank / (p.attn_tp() * p.attn_cp);
  c.moe_tp = rank % p.moe_tp();
  c.moe_ep = (rank / p.moe_tp()) % p.moe_ep;
  c.moe_dp = rank / (p.moe_tp() * p.moe_ep);
  c.node = rank / p.gpus_per_node();
  return c;
}

int attention_rank(const ParallelConfig& p, int attn_dp, int attn_cp, int attn_tp) {
  return (attn_dp * p.attn_cp + attn_cp) * p.attn_tp() + attn_tp;
}

std::string to_string(GroupKind kind) {
  switch (kind) {
    case GroupKind::World: return "world";
    case GroupKind::AttnTp: return "attn_tp";
    case GroupKind::AttnCp: return "attn_cp";
    case GroupKind::AttnDp: return "attn_dp";
    case GroupKind::Moe: return "moe";
    case GroupKind::MoeTp: return "moe_tp";
    case GroupKind::MoeEp: return "moe_ep";
    case GroupKind::MoeDp: return "moe_dp";
    case GroupKind::MoeCp: return "moe_cp";
    case GroupKind::DenseTp: return "dense_tp";
  }
  return "?";
}

const std::vector<GroupKind>& all_group_kinds() {
  static const std::vector<GroupKind> kinds = {GroupKind::World, GroupKind::AttnTp, GroupKind::AttnCp,
                                               GroupKind::AttnDp, GroupKind::Moe,    GroupKind::MoeTp,  GroupKind::MoeEp,
                                               GroupKind::MoeDp, GroupKind::MoeCp,  GroupKind::DenseTp};
  return kinds;
}

namespace {

// Groups ranks by a key; members in increasing rank order, groups in order of first member.
template <typename Key>
std::vector<std::vector<int>> group_by(int world, Key key) {
  std::vector<std::vector<int>> groups;
  std::vector<decltype(key(0))> keys;
  for (int r = 0; r < world; ++r) {
    const auto k = key(r);
    auto it = std::find(keys.begin(), keys.end(), k);
    if (it == keys.end()) {
      keys.push_back(k);
      groups.push_back({r});
    } else {
      groups[it - keys.begin()].push_back(r);
    }
  }
  return groups;
}

}  // namespace

std::vector<std::vector<int>> group_partition(const ParallelConfig& p, GroupKind kind) {
  const int W = p.world();
  auto c = [&](int r) { return rank_coords(p, r); };
  using K = std::vector<int>;
  switch (kind) {
    case GroupKind::World: return group_by(W, [](int) { return K{}; });
    case GroupKind::AttnTp: return group_by(W, [&](int r) { return K{c(r).attn_dp, c(r).attn_cp}; });
    case GroupKind::AttnCp: return group_by(W, [&](int r) { return K{c(r).attn_dp, c(r).attn_tp}; });
    case GroupKind::AttnDp: return group_by(W, [&](int r) { return K{c(r).attn_cp, c(r).attn_tp}; });
    case GroupKind::Moe: return group_by(W, [&](int r) { return K{c(r).moe_dp}; });
    case GroupKind::MoeTp: return group_by(W, [&](int r) { return K{c(r).moe_dp, c(r).moe_ep}; });
    case GroupKind::MoeEp: return group_by(W, [&](int r) { return K{c(r).moe_dp, c(r).moe_tp}; });
    case GroupKind::MoeDp: return group_by(W, [&](int r) { return K{c(r).moe_ep, c(r).moe_tp}; });
    case GroupKind::MoeCp:
      return group_by(W, [&](int r) { return K{c(r).attn_dp, c(r).attn_tp, c(r).attn_cp / p.cp_per_moe()}; });
    case GroupKind::DenseTp:
      if (p.dense_tp() == 1) return group_by(W, [](int r) { return K{r}; });
      if (p.moe_dense_tp) return group_partition(p, GroupKind::AttnTp);  // validated == attn_tp
      return group_partition(p, GroupKind::World);
  }
  return {};
}

namespace {
std::string list(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? "," : "") + std::to_string(ranks[i]);
  return s + "]";
}
}  // namespace

std::string format_group_table(const ParallelConfig& p) {
  std::ostringstream out;
  out << "tp=" << p.tp << " dp=" << p.dp << " attn_cp=" << p.attn_cp << " attn_tp=" << p.attn_tp()
      << " moe_dp=" << p.moe_dp << " moe_ep=" << p.moe_ep << " moe_tp=" << p.moe_tp()
      << " moe_dense_tp=" << (p.moe_dense_tp ? std::to_string(*p.moe_dense_tp) : "none") << " nnodes=" << p.nnodes
      << "\n\n";
  out << "rank node | attn dp cp tp | moe dp ep tp |";
  for (GroupKind k : all_group_kinds())
    if (k != GroupKind::World) out << " " << to_string(k);
  out << "\n";
  for (int r = 0; r < p.world(); ++r) {
    const RankCoords c = rank_coords(p, r);
    out << std::setw(4) << r << std::setw(5) << c.node << " |     " << std::setw(2) << c.attn_dp << std::setw(3)
        << c.attn_cp << std::setw(3) << c.attn_tp << " |    " << std::setw(2) << c.moe_dp << std::setw(3) << c.moe_ep
        << std::setw(3) << c.moe_tp << " |";
    for (GroupKind k : all_group_kinds()) {
      if (k == GroupKind::World) continue;
      for (const auto& g : group_partition(p, k))
        if (std::find(g.begin(), g.end(), r) != g.end()) out << " " << list(g);
    }
    out << "\n";
  }
  return out.str();
}

nlohmann::json group_table_json(const ParallelConfig& p) {
  nlohmann::json groups = nlohmann::json::object();
  for (GroupKind k : all_group_kinds()) groups[to_string(k)] = group_partition(p, k);
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < p.world(); ++r) {
    const RankCoords c = rank_coords(p, r);
    ranks.push_back({{"rank", r},        {"node", c.node},     {"attn_dp", c.attn_dp}, {"attn_cp", c.attn_cp},
                     {"attn_tp", c.attn_tp}, {"moe_dp", c.moe_dp}, {"moe_ep", c.moe_ep},   {"moe_tp", c.moe_tp}});
  }
  return {{"config", p.to_json()}, {"groups", groups}, {"ranks", ranks}};
}

}  // namespace lb
