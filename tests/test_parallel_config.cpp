// Parallel sizes and process groups: the tables for the layouts.md configurations, the group
// invariants on every valid small config, and the rejection of invalid combinations.
#include "harness/runtime/errors.h"
#include "harness/model/model_config.h"
#include "harness/model/parallel_fit.h"
#include "harness/runtime/parallel_config.h"
#include "test_util.h"

namespace lb {
namespace {

using Groups = std::vector<std::vector<int>>;

ParallelConfig cfg(const std::string& spec) {
  ParallelConfig p = parse_parallel_config(spec);
  validate(p);
  return p;
}

Groups groups(const std::string& spec, GroupKind kind) { return group_partition(cfg(spec), kind); }

TEST(ParallelConfig, LayoutA_CpFusedMoe) {  // tp=4, attn_cp=4: attention on one rank per CP slice
  EXPECT_EQ(cfg("tp=4,attn_cp=4").attn_tp(), 1);
  EXPECT_EQ(groups("tp=4,attn_cp=4", GroupKind::AttnCp), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(groups("tp=4,attn_cp=4", GroupKind::AttnTp), (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(groups("tp=4,attn_cp=4", GroupKind::MoeTp), (Groups{{0, 1, 2, 3}}));
}

TEST(ParallelConfig, LayoutB_MoeFullAndBaseline) {
  const std::string full = "tp=4,attn_cp=2,moe_dp=1";  // new: one MoE group gathers both CP ranks
  EXPECT_EQ(cfg(full).attn_tp(), 2);
  EXPECT_EQ(groups(full, GroupKind::AttnTp), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(groups(full, GroupKind::AttnCp), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(groups(full, GroupKind::MoeTp), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(groups(full, GroupKind::MoeCp), (Groups{{0, 2}, {1, 3}}));
  const std::string base = "tp=4,attn_cp=2,moe_dp=2";  // baseline: attn_cp == moe_dp
  EXPECT_EQ(groups(base, GroupKind::MoeTp), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(groups(base, GroupKind::Moe), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(groups(base, GroupKind::MoeDp), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(groups(base, GroupKind::MoeCp), (Groups{{0}, {1}, {2}, {3}}));
  // 8 ranks, CP 4 with attention TP 2, two MoE replicas: each gathers two CP ranks.
  EXPECT_EQ(groups("tp=8,attn_cp=4,moe_dp=2", GroupKind::MoeCp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(groups("tp=8,attn_cp=4,moe_dp=2", GroupKind::MoeTp), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
}

TEST(ParallelConfig, LayoutC_DpAttention) {
  const std::string c = "tp=4,dp=4,moe_ep=4";
  EXPECT_EQ(cfg(c).attn_tp(), 1);
  EXPECT_EQ(cfg(c).moe_tp(), 1);
  EXPECT_EQ(groups(c, GroupKind::AttnDp), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(groups(c, GroupKind::AttnTp), (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(groups(c, GroupKind::MoeEp), (Groups{{0, 1, 2, 3}}));
}

TEST(ParallelConfig, LayoutD_DenseTp) {
  EXPECT_EQ(groups("tp=4,dp=2,moe_dense_tp=2", GroupKind::AttnTp), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(groups("tp=4,dp=2,moe_dense_tp=2", GroupKind::DenseTp), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(groups("tp=4,dp=2,moe_dense_tp=1", GroupKind::DenseTp), (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(groups("tp=4,dp=2", GroupKind::DenseTp), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(groups("tp=4,dp=2", GroupKind::AttnDp), (Groups{{0, 2}, {1, 3}}));
}

TEST(ParallelConfig, RankMappingAndNodes) {
  ParallelConfig p = cfg("tp=8,dp=2,attn_cp=2,nnodes=2");
  for (int r = 0; r < 8; ++r) {
    RankCoords c = rank_coords(p, r);
    EXPECT_EQ(attention_rank(p, c.attn_dp, c.attn_cp, c.attn_tp), r);
    EXPECT_EQ(c.node, r / 4);
  }
  EXPECT_EQ(rank_coords(p, 5).attn_dp, 1);
  EXPECT_EQ(rank_coords(p, 5).attn_cp, 0);
  EXPECT_EQ(rank_coords(p, 5).attn_tp, 1);
}

// Every kind partitions the world into groups of the size its name promises, on every valid
// config of up to 8 ranks.
TEST(ParallelConfig, GroupInvariantsOnEveryValidConfig) {
  int checked = 0;
  for (int tp : {1, 2, 4, 6, 8})
    for (int dp : {1, 2, 4})
      for (int cp : {1, 2, 4})
        for (int moe_dp : {1, 2, 4})
          for (int moe_ep : {1, 2, 4}) {
            ParallelConfig p;
            p.tp = tp, p.dp = dp, p.attn_cp = cp, p.moe_dp = moe_dp, p.moe_ep = moe_ep;
            try {
              validate(p);
            } catch (const InputError&) {
              continue;
            }
            ++checked;
            SCOPED_TRACE(p.to_json().dump());
            const std::map<GroupKind, int> sizes = {
                {GroupKind::World, tp},           {GroupKind::AttnTp, p.attn_tp()}, {GroupKind::AttnCp, cp},
                {GroupKind::AttnDp, dp},          {GroupKind::Moe, tp / moe_dp},    {GroupKind::MoeTp, p.moe_tp()},   {GroupKind::MoeEp, moe_ep},
                {GroupKind::MoeDp, moe_dp},       {GroupKind::MoeCp, p.cp_per_moe()}, {GroupKind::DenseTp, tp}};
            for (auto [kind, size] : sizes) {
              Groups g = group_partition(p, kind);
              std::vector<int> seen(tp, 0);
              for (const auto& members : g) {
                EXPECT_EQ(int(members.size()), size) << to_string(kind);
                for (int r : members) ++seen[r];
              }
              EXPECT_EQ(seen, std::vector<int>(tp, 1)) << to_string(kind);
            }
            // A MoE group holds whole attention TP groups of the CP ranks it serves.
            for (const auto& members : group_partition(p, GroupKind::MoeCp))
              for (int r : members) EXPECT_EQ(rank_coords(p, r).moe_dp, rank_coords(p, members[0]).moe_dp);
          }
  EXPECT_GT(checked, 30);
}

void expect_rejected(const std::string& spec, const std::string& needle) {
  try {
    validate(parse_parallel_config(spec));
    ADD_FAILURE() << spec << " was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ParallelConfig, InvalidCombinationsNameTheRule) {
  expect_rejected("tp=4,dp=3", "attn_tp * attn_cp * dp == tp");
  expect_rejected("tp=4,moe_ep=3", "moe_dp * moe_ep * moe_tp == tp");
  expect_rejected("tp=4,dp=2,moe_dense_tp=4", "moe_dense_tp (4)");
  expect_rejected("tp=8,dp=2,attn_cp=2,moe_dp=2", "moe_dp (2) > 1 needs dp == 1");
  expect_rejected("tp=8,attn_cp=2,moe_dp=4", "must divide attn_cp");
  expect_rejected("tp=4,nnodes=3", "nnodes");
  expect_rejected("tp=0", ">= 1");
  expect_rejected("tp=4,cp=2", "unknown key 'cp'");
  expect_rejected("tp=four", "not an integer");
  expect_rejected("tp=4,dp", "not key=value");
  // Rules that need the model: experts over EP ranks, heads over attention TP ranks.
  ModelConfig qwen = *find_preset("tiny-qwen3-moe");
  qwen.num_experts = 6;
  qwen.num_heads = 6;
  EXPECT_NO_THROW(validate(cfg("tp=2,moe_ep=2"), qwen));
  EXPECT_THROW(validate(cfg("tp=4,moe_ep=4"), qwen), InputError);
  EXPECT_THROW(validate(cfg("tp=4"), qwen), InputError);
}

TEST(ParallelConfig, GroupsCommand) {
  test::CliResult ok = test::run_cli({"groups", "--tp", "4", "--attn-cp", "2", "--moe-dp", "1"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("[0,2]"), std::string::npos) << ok.out;
  test::CliResult bad = test::run_cli({"groups", "--tp", "4", "--dp", "2", "--moe-dense-tp", "3"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("moe_dense_tp (3)"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace lb
