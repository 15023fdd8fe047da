// KvCache::write against index_copy_ on fresh random inputs: on the CPU it is index_copy_ itself;
// on the GPU (skipped without one) the one-launch kernel of kernels/cache_write.h, with Qwen3's
// parts (the values a strided column block of a wider product), DeepSeek-V3's, and odd widths
// that take narrower copy units, in every dtype it takes. Rows not written keep their old values.
#include "kernels/cache_write.h"
#include "oracles/kv_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lb {
namespace {

struct WriteCase {
  std::vector<std::vector<int64_t>> part_shapes;
  std::string label;
};

// A layer's parts as KvCache::write sees them: [slots * cap, width].
std::vector<torch::Tensor> flat_parts(const KvCache& cache, int64_t layer) {
  std::vector<torch::Tensor> views;
  for (const torch::Tensor& part : cache.layer(layer)) views.push_back(part.view({cache.slots() * cache.capacity(), -1}));
  return views;
}

// The step's rows of each part, [n, part shape...]: the first packed, every later one a column
// block of one wider tensor (as Qwen3's values are of the qkv product), so read at a stride.
std::vector<torch::Tensor> draw_rows(const WriteCase& c, int64_t n, const torch::TensorOptions& o) {
  int64_t total = 0;
  for (const auto& shape : c.part_shapes) {
    int64_t width = 1;
    for (int64_t s : shape) width *= s;
    total += width;
  }
  const torch::Tensor wide = torch::randn({n, total + 8}, o);
  std::vector<torch::Tensor> rows;
  int64_t at = 8;  // past the first 8 columns: a block that starts 16 bytes in (in bf16)
  for (size_t p = 0; p < c.part_shapes.size(); ++p) {
    std::vector<int64_t> shape = {n};
    int64_t width = 1;
    for (int64_t s : c.part_shapes[p]) shape.push_back(s), width *= s;
    rows.push_back(p == 0 ? torch::randn(shape, o) : wide.narrow(1, at, width).view(shape));
    at += width;
  }
  return rows;
}

// Every part after parts[p].index_copy_(0, at, rows[p]), on copies.
std::vector<torch::Tensor> index_copied(const std::vector<torch::Tensor>& parts, const std::vector<torch::Tensor>& rows,
                                        const torch::Tensor& at) {
  std::vector<torch::Tensor> out;
  for (size_t p = 0; p < parts.size(); ++p)
    out.push_back(parts[p].clone().index_copy_(0, at, rows[p].reshape({rows[p].size(0), parts[p].size(1)})));
  return out;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  bool same = a.size() == b.size();
  for (size_t p = 0; same && p < a.size(); ++p) same = torch::equal(a[p], b[p]);
  return same;
}

const std::vector<WriteCase>& cases() {
  static const std::vector<WriteCase> all = {{{{4, 128}, {4, 128}}, "Qwen3 keys and values"},
                                             {{{512}, {64}}, "DeepSeek-V3 latent and rotary key"},
                                             {{{3}, {5, 7}, {1}}, "odd widths"}};
  return all;
}

// A two-layer cache of random contents; layer 1 gets n rows at distinct random flat rows, and must
// equal index_copy_ on its old contents while layer 0 stays as it was.
void expect_write_matches_index_copy(torch::Device device, torch::ScalarType dtype, bool kernel) {
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  for (const WriteCase& c : cases())
    for (int64_t n : {1, 7, 40}) {
      const std::string what = c.label + ", n " + std::to_string(n) + ", " + std::string(c10::toString(dtype));
      KvCache cache(2, 5, 33, c.part_shapes, o);
      for (int64_t l = 0; l < 2; ++l)
        for (const torch::Tensor& part : cache.layer(l)) part.copy_(torch::randn(part.sizes(), o));
      const std::vector<torch::Tensor> rows = draw_rows(c, n, o);
      const torch::Tensor at = torch::randperm(5 * 33, o.dtype(torch::kInt64)).narrow(0, 0, n);
      std::vector<torch::Tensor> layer0, before;
      for (const torch::Tensor& part : flat_parts(cache, 0)) layer0.push_back(part.clone());
      for (const torch::Tensor& part : flat_parts(cache, 1)) before.push_back(part.clone());
      const std::vector<torch::Tensor> want = index_copied(before, rows, at);
      ASSERT_FALSE(all_equal(want, before)) << what << ": the write changes nothing to compare";

      std::vector<torch::Tensor> direct;
      for (const torch::Tensor& part : before) direct.push_back(part.clone());
      EXPECT_EQ(write_cache_rows_fused(direct, rows, at), kernel) << what;
      if (kernel) {
        EXPECT_TRUE(all_equal(direct, want)) << what << ": the kernel";
      }

      cache.write(1, rows, at);
      EXPECT_TRUE(all_equal(flat_parts(cache, 1), want)) << what << ": KvCache::write";
      EXPECT_TRUE(all_equal(flat_parts(cache, 0), layer0)) << what << ": another layer changed";
    }
}

TEST(KvCacheWrite, CpuIsIndexCopy) { expect_write_matches_index_copy(torch::kCPU, torch::kFloat32, false); }

#define LB_SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine"

TEST(GpuKvCacheWrite, KernelMatchesIndexCopy) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(31);
  for (const auto dtype : {torch::kBFloat16, torch::kFloat32, torch::kHalf})
    expect_write_matches_index_copy(torch::Device("cuda"), dtype, true);
}

// What the kernel leaves to index_copy_ (rows of another dtype, converted on the way) and what it
// does differently: a row aimed outside the cache is skipped, the others written.
TEST(GpuKvCacheWrite, OtherDtypesFallBackAndRowsOutsideAreSkipped) {
  LB_SKIP_WITHOUT_GPU();
  torch::manual_seed(32);
  const auto o = torch::TensorOptions().device(torch::Device("cuda")).dtype(torch::kBFloat16);
  KvCache cache(1, 3, 10, {{4, 128}, {4, 128}}, o);
  const std::vector<torch::Tensor> rows = {torch::randn({3, 4, 128}, o.dtype(torch::kFloat32)),
                                           torch::randn({3, 4, 128}, o.dtype(torch::kFloat32))};
  const torch::Tensor at = torch::tensor({4, 29, 0}, torch::kInt64).to(o.device());
  EXPECT_FALSE(write_cache_rows_fused(flat_parts(cache, 0), rows, at));
  std::vector<torch::Tensor> low;
  for (const torch::Tensor& r : rows) low.push_back(r.to(torch::kBFloat16));
  const std::vector<torch::Tensor> want = index_copied(flat_parts(cache, 0), low, at);
  cache.write(0, rows, at);
  EXPECT_TRUE(all_equal(flat_parts(cache, 0), want)) << "index_copy_ with the conversion";

  std::vector<torch::Tensor> parts;
  for (const torch::Tensor& part : flat_parts(cache, 0)) parts.push_back(torch::randn(part.sizes(), o));
  const std::vector<torch::Tensor> old = {parts[0].clone(), parts[1].clone()};
  const torch::Tensor outside = torch::tensor({-1, 7, 30}, torch::kInt64).to(o.device());
  ASSERT_TRUE(write_cache_rows_fused(parts, low, outside));
  const torch::Tensor only_row_1 = torch::tensor({7}, torch::kInt64).to(o.device());
  const std::vector<torch::Tensor> want_one = index_copied(old, {low[0].narrow(0, 1, 1), low[1].narrow(0, 1, 1)}, only_row_1);
  EXPECT_TRUE(all_equal(parts, want_one)) << "rows -1 and 30 of a 30-row cache skipped, row 7 written";
}

}  // namespace
}  // namespace lb
