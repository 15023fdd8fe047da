#include "kernels/moe_steps.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/moe_decode.h"
#include "kernels/cuda/moe_pairs.h"
#include "kernels/cuda/moe_rows.h"
#include "kernels/cuda/moe_stream.h"
#include "kernels/cuda/moe_wgmma.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

#ifdef LB_HAVE_CUDA
namespace {

// Up to this many (token, expert) pairs (two decode tokens at top 8) each pair gets its own
// blocks: sorting would cost a launch, and few experts are chosen twice. At 4 tokens the streamed
// kernels, with their stages of 128 columns x 3, are faster (H200 at 83d2500, Qwen3: 0.0788-0.0790
// ms against 0.0797-0.0800; results/kernels/path_ab_83d2500/).
constexpr int64_t kPairPathMaxPairs = 16;
// Past this many pairs (1024 tokens at top 8) the grouped GEMMs beat the streamed kernels, whose
// 64-row by 64-pair tiles bring in too few products per byte (H200, 2048 tokens: Qwen3 0.78 ms
// against 1.18, DeepSeek-V3 8.65 against 9.65).
constexpr int64_t kStreamMaxPairs = 8192;
static_assert(kStreamMaxPairs <= cuda::max_sort_pairs(cuda::kMaxSortExperts),
              "decode_moe sorts every pair it takes");
static_assert(cuda::kMaxSortExperts <= 65535, "the expert kernels take one expert per grid.z or grid.y index");
// The warpgroup kernels (kernels/cuda/moe_wgmma.h) beat the streamed ones from this many pairs per
// expert on average (256 Qwen3 tokens at top 8; H200, bench-moe at a67d736 with the choice switched:
// 0.319-0.323 ms against 0.328-0.331; 128 tokens 0.312-0.313 against 0.304-0.307) ...
constexpr double kWgmmaMinAverage = 16;
// ... or from 9 where the gate/up rows are this long: each block then streams 3.5 MB of weights
// (DeepSeek-V3, hidden 7168), which hides the fill of its pipeline (H200 at a67d736, 512 tokens, 16
// an expert: 5.24 ms against 5.47). Below that the streamed kernels win since their stages are 128
// columns x 3 (H200 at 83d2500, DeepSeek-V3 8 / 16 / 64 / 128 tokens: 1.217-1.222 / 1.890-1.900 /
// 4.323-4.327 / 4.936-4.955 ms against 1.263-1.264 / 1.949-1.951 / 4.438-4.445 / 5.054-5.090;
// results/kernels/path_ab_83d2500/), and at 256 tokens, 8 an expert (two calls at b7670bd /
// 64c4eb0: 5.047-5.063 and 4.941 ms against 5.120-5.124 and 5.091-5.099); at 320 tokens, 10 an
// expert, the warpgroup kernels win (5.104-5.110 against 5.173-5.176; results/kernels/stream_path_ab_64c4eb0/).
constexpr int64_t kWgmmaLongRows = 4096;
constexpr double kWgmmaLongRowsMinAverage = 9;
// Up to this many pairs (16384 tokens at top 8) the warpgroup kernels take the sorted pairs with no
// host synchronization, past the streamed kernels' range, where the sort's keys fit a byte (up to
// 255 experts held; cuda::max_sort_pairs). Against the host-synced path (which reads the group
// sizes back, then runs the padded batched GEMM or cuBLAS's grouped one) on an H200 at a0058b6, two
// rounds (results/kernels/device_path_ab_a0058b6/): Qwen3 4096 / 8192 tokens 0.720-0.723 /
// 1.254-1.296 ms against 0.806-0.855 / 1.424-1.429; the one-GPU prefill of 4 layers x 8192 tokens
// 8.87-8.89 ms against 9.42-9.64. At 6a29938, with byte keys: Qwen3 16384 tokens 2.42-2.54 ms
// against 2.67-2.74 (results/kernels/ready_counts_ab_6a29938/).
constexpr int64_t kWgmmaDeviceMaxPairs = 131072;
// ... and a quarter as many where the gate/up rows are long (kWgmmaLongRows): the products are larger
// than the weights there, and cuBLAS's tiles win (DeepSeek-V3 8192 tokens, 65536 pairs: 11.55-11.69
// ms against 10.38-11.30; 4096 tokens 7.65-7.66 against 7.81-7.84).
constexpr int64_t kWgmmaDeviceMaxPairsLongRows = 32768;
static_assert(kWgmmaDeviceMaxPairs <= cuda::kMaxSortPairs, "decode_moe sorts every pair it takes");

int64_t wgmma_device_max_pairs(int64_t hidden) {
  return hidden >= kWgmmaLongRows ? kWgmmaDeviceMaxPairsLongRows : kWgmmaDeviceMaxPairs;
}

// The activations and expert weights as every expert kernel here reads them: x's kernel dtype,
// the weights on a GPU in that dtype, all three contiguous and 16-byte aligned; none otherwise.
struct ExpertOperands {
  cuda::Dtype dtype;
  torch::Tensor x, gate_up, down;
};
std::optional<ExpertOperands> expert_operands(const torch::Tensor& x, const torch::Tensor& gate_up,
                                              const torch::Tensor& down) {
  const auto d = kernel_dtype(x);
  if (!d || !gate_up.is_cuda() || gate_up.scalar_type() != x.scalar_type() || down.scalar_type() != x.scalar_type())
    return std::nullopt;
  ExpertOperands o{*d, x.contiguous(), gate_up.contiguous(), down.contiguous()};
  if (!aligned16(o.x) || !aligned16(o.gate_up) || !aligned16(o.down)) return std::nullopt;
  return o;
}

// Gate/up and down of sorted pairs on the warpgroup kernels; the callers have checked that they
// run here (cuda::moe_wgmma_fits).
void wgmma_products(cuda::Dtype d, const torch::Tensor& x, const torch::Tensor& gate_up, const torch::Tensor& down,
                    const torch::Tensor& order, const torch::Tensor& offsets, const torch::Tensor& pair_weight,
                    torch::Tensor& act, torch::Tensor& y, int64_t k, const torch::Tensor& ready) {
  const int64_t held = down.size(0), hidden = down.size(1), inter = down.size(2), pairs = order.size(0);
  const cudaStream_t stream = stream_of(x);
  check_launch(cuda::moe_wgmma_gate_up(d, x.data_ptr(), gate_up.data_ptr(), order.data_ptr<int64_t>(),
                                       offsets.data_ptr<int64_t>(), pair_weight.data_ptr<float>(), act.data_ptr(), held,
                                       pairs, inter, hidden, k, ready.data_ptr<int>(), stream),
               "MoE warpgroup gate/up kernel");
  check_launch(cuda::moe_wgmma_down(d, act.data_ptr(), down.data_ptr(), offsets.data_ptr<int64_t>(), y.data_ptr(), held,
                                    pairs, hidden, inter, ready.data_ptr<int>(), stream),
               "MoE warpgroup down kernel");
}

}  // namespace
#endif

torch::Tensor silu_mul_weight(const torch::Tensor& h, const torch::Tensor& w) {
  const int64_t inter = h.size(1) / 2;
#ifdef LB_HAVE_CUDA
  if (const auto d = kernel_dtype(h); d && w.is_cuda() && w.scalar_type() == torch::kFloat32) {
    const c10::cuda::CUDAGuard guard(h.device());
    const torch::Tensor hc = h.contiguous(), wc = w.contiguous();
    torch::Tensor out = torch::empty({h.size(0), inter}, h.options());
    if (aligned16(hc)) {
      check_launch(cuda::silu_mul_weight(*d, hc.data_ptr(), wc.data_ptr<float>(), out.data_ptr(), h.size(0), inter,
                                         stream_of(h)),
                   "silu * up * weight kernel");
      return out;
    }
  }
#endif
  const torch::Tensor hf = h.to(torch::kFloat32);
  return (torch::silu(hf.narrow(1, 0, inter)) * hf.narrow(1, inter, inter) * w.reshape({-1, 1}))
      .to(h.scalar_type());
}

namespace {

// rows_settled: row_of_pair was complete when the kernel before the combine launched
// (cuda::combine_pairs), so the combine reads it before waiting for that kernel.
torch::Tensor combine_rows(const torch::Tensor& y, const torch::Tensor& row_of_pair, int64_t tokens, int64_t k,
                           bool rows_settled) {
  const int64_t hidden = y.size(1);
#ifdef LB_HAVE_CUDA
  if (const auto d = kernel_dtype(y); d && (!row_of_pair.defined() || row_of_pair.is_cuda())) {
    const c10::cuda::CUDAGuard guard(y.device());
    const torch::Tensor yc = y.contiguous(), rc = row_of_pair.defined() ? row_of_pair.contiguous() : row_of_pair;
    torch::Tensor out = torch::empty({tokens, hidden}, y.options());
    if (aligned16(yc)) {
      check_launch(cuda::combine_pairs(*d, yc.data_ptr(), rc.defined() ? rc.data_ptr<int64_t>() : nullptr,
                                       out.data_ptr(), tokens, k, hidden, stream_of(y), rows_settled),
                   "MoE combine kernel");
      return out;
    }
  }
#endif
  if (!row_of_pair.defined())
    return y.narrow(0, 0, tokens * k).view({tokens, k, hidden}).sum(1, false, torch::kFloat32).to(y.scalar_type());
  // A zero row at the end stands in for the slots held elsewhere.
  const torch::Tensor padded = torch::cat({y, torch::zeros({1, hidden}, y.options())});
  const torch::Tensor rows = row_of_pair.masked_fill(row_of_pair < 0, y.size(0));
  return padded.index_select(0, rows).view({tokens, k, hidden}).sum(1, false, torch::kFloat32).to(y.scalar_type());
}

}  // namespace

torch::Tensor combine_pairs(const torch::Tensor& y, const torch::Tensor& row_of_pair, int64_t tokens, int64_t k) {
  return combine_rows(y, row_of_pair, tokens, k, false);
}

torch::Tensor decode_moe(const torch::Tensor& x, const torch::Tensor& experts, const torch::Tensor& weights,
                         const torch::Tensor& gate_up, const torch::Tensor& down, int64_t first_expert) {
#ifdef LB_HAVE_CUDA
  const int64_t held = gate_up.size(0), hidden = x.size(1), inter = down.size(2), pairs = experts.numel();
  const int64_t k = experts.size(1), tokens = x.size(0);
  if (!experts.is_cuda() || held > cuda::kMaxSortExperts || pairs > cuda::max_sort_pairs(held)) return {};
  const c10::cuda::CUDAGuard guard(x.device());
  const auto operands = expert_operands(x, gate_up, down);
  if (!operands || hidden % cuda::moe_decode_alignment(operands->dtype) != 0 ||
      inter % cuda::moe_decode_alignment(operands->dtype) != 0)
    return {};
  const cuda::Dtype d = operands->dtype;
  const double average = double(pairs) / double(held);
  const bool wgmma =
      (average >= kWgmmaMinAverage || (hidden >= kWgmmaLongRows && average >= kWgmmaLongRowsMinAverage)) &&
      cuda::moe_wgmma_fits(d, hidden, inter);
  // Past the streamed kernels' range only the warpgroup kernels beat the host-synced GEMMs.
  if (pairs > kStreamMaxPairs && !wgmma) return {};
  const torch::Tensor &xc = operands->x, &gu = operands->gate_up, &dn = operands->down;
  const torch::Tensor ec = experts.to(torch::kInt64).contiguous(), wc = weights.to(torch::kFloat32).contiguous();
  const cudaStream_t stream = stream_of(x);
  torch::Tensor act = torch::empty({pairs, inter}, x.options()), y = torch::empty({pairs, hidden}, x.options());
  if (pairs <= kPairPathMaxPairs && cuda::moe_pair_rows_fit(d, hidden, inter)) {
    check_launch(cuda::moe_pair_gate_up(d, xc.data_ptr(), gu.data_ptr(), ec.data_ptr<int64_t>(), first_expert, held,
                                        wc.data_ptr<float>(), act.data_ptr(), pairs, inter, hidden, k, stream),
                 "MoE per-pair gate/up kernel");
    check_launch(cuda::moe_pair_down(d, act.data_ptr(), dn.data_ptr(), ec.data_ptr<int64_t>(), first_expert, held,
                                     y.data_ptr(), pairs, hidden, inter, stream),
                 "MoE per-pair down kernel");
    return combine_pairs(y, {}, tokens, k);
  }
  const auto index = ec.options();
  torch::Tensor order = torch::empty({pairs}, index), offsets = torch::empty({held + 1}, index);
  torch::Tensor row_of_pair = torch::empty({pairs}, index);
  const bool streamed = !wgmma && cuda::moe_stream_fits(d, hidden, inter);
  // Per-expert counts of the rows gate/up wrote, which down waits for (cleared by the sort) instead
  // of the whole gate/up kernel. On the streamed kernels (H200 at f9a25c5, three rounds,
  // results/kernels/stream_counts_ab_f9a25c5/): Qwen3 4 / 8 / 64 / 128 tokens 0.0731-0.0736 /
  // 0.1128-0.1134 / 0.2703-0.2709 / 0.2836-0.2845 ms against 0.0767-0.0769 / 0.1173-0.1184 /
  // 0.2757-0.2760 / 0.2883-0.2887, DeepSeek-V3 8 tokens 1.170-1.171 against 1.184-1.186.
  const bool counted = wgmma || streamed;
  const torch::Tensor ready = counted ? torch::empty({held}, index.dtype(torch::kInt32)) : torch::Tensor();
  int* const ready_counts = counted ? ready.data_ptr<int>() : nullptr;
  check_launch(cuda::moe_sort_pairs(ec.data_ptr<int64_t>(), pairs, first_expert, held, order.data_ptr<int64_t>(),
                                    offsets.data_ptr<int64_t>(), row_of_pair.data_ptr<int64_t>(), stream,
                                    ready_counts),
               "MoE pair sort kernel");
  if (wgmma) {
    wgmma_products(d, xc, gu, dn, order, offsets, wc.reshape({-1}), act, y, k, ready);
    return combine_pairs(y, row_of_pair, tokens, k);
  }
  if (streamed) {
    check_launch(cuda::moe_stream_gate_up(d, xc.data_ptr(), gu.data_ptr(), order.data_ptr<int64_t>(),
                                          offsets.data_ptr<int64_t>(), wc.data_ptr<float>(), act.data_ptr(), held,
                                          pairs, inter, hidden, k, stream, ready_counts),
                 "MoE streamed gate/up kernel");
    check_launch(cuda::moe_stream_down(d, act.data_ptr(), dn.data_ptr(), offsets.data_ptr<int64_t>(), y.data_ptr(),
                                       held, pairs, hidden, inter, stream, ready_counts),
                 "MoE streamed down kernel");
    // The streamed gate/up lets the kernels after it launch only once the sort is done
    // (kernels/cuda/moe_stream.cu): the combine reads the sort's rows before its wait. With down's
    // first weights before its wait too, Qwen3 4 / 8 / 16 / 32 tokens ran 3.8 / 2.9 / 1.1 / 1.1%
    // faster on an H200 (A/B at a94be40, results/kernels/early_reads_ab_a94be40/); after the
    // warpgroup kernels the early rows were level or up to 1.3% slower, so they stay off there.
    return combine_rows(y, row_of_pair, tokens, k, true);
  }
  check_launch(cuda::moe_decode_gate_up(d, xc.data_ptr(), gu.data_ptr(), order.data_ptr<int64_t>(),
                                        offsets.data_ptr<int64_t>(), wc.data_ptr<float>(), act.data_ptr(), held, inter,
                                        hidden, k, stream),
               "MoE decode gate/up kernel");
  check_launch(cuda::moe_decode_down(d, act.data_ptr(), dn.data_ptr(), offsets.data_ptr<int64_t>(), y.data_ptr(), held,
                                     hidden, inter, stream),
               "MoE decode down kernel");
  return combine_pairs(y, row_of_pair, tokens, k);
#else
  return {};
#endif
}

torch::Tensor wgmma_expert_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& offsets,
                                const torch::Tensor& weights, const torch::Tensor& gate_up, const torch::Tensor& down,
                                int64_t k) {
#ifdef LB_HAVE_CUDA
  if (!x.is_cuda() || order.scalar_type() != torch::kInt64 || offsets.scalar_type() != torch::kInt64 ||
      down.size(0) > 65535)
    return {};
  const c10::cuda::CUDAGuard guard(x.device());
  const auto operands = expert_operands(x, gate_up, down);
  if (!operands || !cuda::moe_wgmma_fits(operands->dtype, x.size(1), down.size(2))) return {};
  const int64_t pairs = order.size(0);
  torch::Tensor act = torch::empty({pairs, down.size(2)}, x.options()), y = torch::empty({pairs, x.size(1)}, x.options());
  const torch::Tensor ready = torch::zeros({down.size(0)}, order.options().dtype(torch::kInt32));
  wgmma_products(operands->dtype, operands->x, operands->gate_up, operands->down, order.contiguous(),
                 offsets.contiguous(), weights.reshape({-1}).to(torch::kFloat32).contiguous(), act, y, k, ready);
  return y;
#else
  return {};
#endif
}

int64_t decode_moe_max_pairs(const torch::Tensor& x, const torch::Tensor& down) {
#ifdef LB_HAVE_CUDA
  const auto d = kernel_dtype(x);
  if (d && x.dim() == 2 && down.dim() == 3 && cuda::moe_stream_fits(*d, x.size(1), down.size(2)))
    return cuda::moe_wgmma_fits(*d, x.size(1), down.size(2))
               ? std::min(wgmma_device_max_pairs(x.size(1)), cuda::max_sort_pairs(down.size(0)))
               : kStreamMaxPairs;
#endif
  return kRowKernelsMaxPairs;
}

}  // namespace lb
