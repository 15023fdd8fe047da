// The decode step's opening launch (kernels/decode_start.h) against the plain ops it replaces:
// positions, read lengths and cache rows of queries in shuffled slots, the embedding rows, and every
// slot's length moved on by one, bit for bit. Skips without a GPU.
#include "kernels/decode_start.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(GpuDecodeStart, OneLaunchMatchesThePlainOps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU";
  const torch::Device cuda("cuda");
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(cuda);
  torch::manual_seed(7);
  for (const auto& [dtype, width] : {std::pair{torch::kBFloat16, int64_t(2048)}, std::pair{torch::kFloat32, int64_t(72)}}) {
    const int64_t slots = 13, n = 9, capacity = 300, vocab = 1000;
    const torch::Tensor table = torch::randn({vocab, width}, torch::TensorOptions().dtype(dtype).device(cuda));
    const torch::Tensor slot = torch::randperm(slots, i64).narrow(0, 0, n).contiguous();  // distinct, shuffled
    const torch::Tensor ids = torch::randint(vocab, {n}, i64);
    const torch::Tensor lengths0 = torch::randint(1, capacity - 1, {slots}, i64);

    const torch::Tensor want_pos = lengths0.index_select(0, slot);
    const torch::Tensor want_x = table.index_select(0, ids);
    torch::Tensor lengths = lengths0.clone();
    const std::optional<DecodeStart> got = decode_step_start_fused(ids, table, lengths, slot, capacity);
    ASSERT_TRUE(got.has_value()) << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(got->pos, want_pos));
    EXPECT_TRUE(torch::equal(got->read_len, want_pos + 1));
    EXPECT_TRUE(torch::equal(got->row, torch::add(want_pos, slot, capacity)));
    EXPECT_TRUE(torch::equal(got->x, want_x)) << c10::toString(dtype);
    EXPECT_TRUE(torch::equal(lengths, lengths0 + 1)) << "every slot moves on, queried or not";
  }
  // What it does not take, it leaves to the plain ops: nothing launched, nothing changed.
  torch::Tensor lengths = torch::zeros({4}, i64);
  const torch::Tensor odd = torch::randn({10, 3}, torch::TensorOptions().device(cuda));  // 12-byte rows
  EXPECT_FALSE(decode_step_start_fused(torch::zeros({2}, i64), odd, lengths, torch::arange(2, i64), 8).has_value());
  EXPECT_TRUE(torch::equal(lengths, torch::zeros({4}, i64)));
}

}  // namespace
}  // namespace lb
