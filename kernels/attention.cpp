#include "kernels/attention.h"

#include "kernels/matmul.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

// Whether scaled_dot_product_attention takes fewer KV heads than query heads (enable_gqa).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define LB_SDPA_TAKES_GROUPS 1
#else
#define LB_SDPA_TAKES_GROUPS 0
#endif

namespace lb {

TokenPlacement packed_placement(const std::vector<int64_t>& seq_lens, torch::Device device,
                                const std::vector<int64_t>& past) {
  std::vector<int64_t> seq, pos;
  for (size_t s = 0; s < seq_lens.size(); ++s)
    for (int64_t p = 0; p < seq_lens[s]; ++p) {
      seq.push_back(int64_t(s));
      pos.push_back((past.empty() ? 0 : past.at(s)) + p);
    }
  auto make = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kInt64).to(device);
  };
  return {make(seq), make(pos), torch::tensor(seq, torch::kInt64)};
}

namespace {

// The rows of each sequence: `order` lists row ids grouped by sequence (ascending sequence id,
// row order kept within one), and sequence ids[i]'s rows are order[begin[i] .. begin[i + 1]).
// Built on the host from one device-to-host copy, however many sequences: the loop over
// sequences then slices views instead of searching (and synchronizing) once per sequence.
struct SequenceRows {
  std::vector<int64_t> order;  // empty when the rows are already grouped (order = identity)
  torch::Tensor device_order;  // `order` on the device, set by upload() (the per-sequence path's)
  std::vector<int64_t> ids, begin;
  // Position of sequence id `s` in ids, or -1.
  int64_t find(int64_t s) const {
    const auto it = std::lower_bound(ids.begin(), ids.end(), s);
    return it != ids.end() && *it == s ? int64_t(it - ids.begin()) : -1;
  }
  int64_t count(size_t i) const { return begin[i + 1] - begin[i]; }
  int64_t row(int64_t grouped) const { return order.empty() ? grouped : order[size_t(grouped)]; }
  void upload(torch::Device device) {
    if (!order.empty() && !device_order.defined())
      device_order = torch::from_blob(order.data(), {int64_t(order.size())}, torch::kInt64)
                         .to(device, /*non_blocking=*/false, /*copy=*/true);
  }
  torch::Tensor gather(const torch::Tensor& t) const {
    return device_order.defined() ? t.index_select(0, device_order) : t;
  }
};

SequenceRows group_by_sequence(const TokenPlacement& tokens) {
  const torch::Tensor& known = tokens.seq_host;
  const torch::Tensor host = (known.defined() && known.numel() == tokens.seq.numel() ? known : tokens.seq)
                                 .to(torch::kCPU, torch::kInt64)
                                 .contiguous();
  const int64_t* id = host.data_ptr<int64_t>();
  const int64_t n = host.numel();
  SequenceRows rows;
  if (std::is_sorted(id, id + n)) {  // packed sequences, as a prefill has them
    for (int64_t i = 0; i < n; ++i)
      if (i == 0 || id[i] != id[i - 1]) rows.ids.push_back(id[i]), rows.begin.push_back(i);
    rows.begin.push_back(n);
    return rows;
  }
  // A KV cache: each step's rows after the previous ones. A stable counting sort by sequence id.
  const int64_t lowest = *std::min_element(id, id + n), highest = *std::max_element(id, id + n);
  TORCH_CHECK(lowest >= 0 && highest - lowest < (int64_t(1) << 24), "attention: sequence ids ", lowest, "..", highest,
              " out of range");
  std::vector<int64_t> start(size_t(highest - lowest + 2), 0);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ++start[size_t(id[i] - lowest + 1)];
  for (size_t c = 1; c < start.size(); ++c) start[c] += start[c - 1];
  for (size_t c = 0; c + 1 < start.size(); ++c)
    if (start[c + 1] > start[c]) rows.ids.push_back(lowest + int64_t(c)), rows.begin.push_back(start[c]);
  rows.begin.push_back(n);
  for (int64_t i = 0; i < n; ++i) order[size_t(start[size_t(id[i] - lowest)]++)] = i;
  rows.order = std::move(order);
  return rows;
}

// Decode-shaped calls (a few queries in each sequence) go to batched_attention: one launch
// sequence for the whole batch instead of one per sequence, which is what a decode step's time was
// made of; and no masked scaled_dot_product_attention, whose cuDNN backend (LibTorch 2.11) builds
// a new graph for every key count, i.e. every decode step (16.8 ms a call on an H200). Prefill
// keeps the per-sequence loop (flash attention, no padding).
constexpr int64_t kBatchedMaxQueries = 16;

// Every sequence that has keys, padded to the longest one's keys (and queries) and attended in
// one batched product. Query heads are grouped on their KV head, so keys and values are read once
// rather than repeated per query head. The math is the plain path's (scores in the input dtype,
// fp32 softmax); padded keys are masked, padded queries dropped. Returns undefined when the
// padding would more than double the keys (sequences of very different lengths).
torch::Tensor batched_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const TokenPlacement& q_tokens, const TokenPlacement& k_tokens,
                                const SequenceRows& q_rows, const SequenceRows& k_rows, double scale) {
  std::vector<std::pair<size_t, size_t>> pairs;  // (query group, key group) of each sequence with keys
  int64_t max_q = 0, max_k = 0, keys = 0;
  for (size_t i = 0; i < q_rows.ids.size(); ++i) {
    const int64_t j = k_rows.find(q_rows.ids[i]);
    if (j < 0) continue;
    pairs.emplace_back(i, size_t(j));
    max_q = std::max(max_q, q_rows.count(i));
    max_k = std::max(max_k, k_rows.count(size_t(j)));
    keys += k_rows.count(size_t(j));
  }
  const int64_t S = int64_t(pairs.size());
  if (S == 0 || max_q > kBatchedMaxQueries || S * max_k > 2 * keys) return {};
  // Row -> padded slot maps, built on the host and copied once: [q rows | q slots | k rows | k slots].
  std::vector<int64_t> maps;
  std::vector<int64_t> k_maps;
  for (int64_t b = 0; b < S; ++b) {
    const auto [i, j] = pairs[size_t(b)];
    for (int64_t t = 0; t < q_rows.count(i); ++t) maps.push_back(q_rows.row(q_rows.begin[i] + t));
    for (int64_t t = 0; t < k_rows.count(j); ++t) k_maps.push_back(k_rows.row(k_rows.begin[j] + t));
  }
  const int64_t nq = int64_t(maps.size()), nk = int64_t(k_maps.size());
  for (int64_t b = 0; b < S; ++b)
    for (int64_t t = 0; t < q_rows.count(pairs[size_t(b)].first); ++t) maps.push_back(b * max_q + t);
  maps.insert(maps.end(), k_maps.begin(), k_maps.end());
  for (int64_t b = 0; b < S; ++b)
    for (int64_t t = 0; t < k_rows.count(pairs[size_t(b)].second); ++t) maps.push_back(b * max_k + t);
  const torch::Tensor all = torch::from_blob(maps.data(), {int64_t(maps.size())}, torch::kInt64)
                                .to(q.device(), /*non_blocking=*/false, /*copy=*/true);
  const torch::Tensor q_row = all.narrow(0, 0, nq), q_slot = all.narrow(0, nq, nq);
  const torch::Tensor k_row = all.narrow(0, 2 * nq, nk), k_slot = all.narrow(0, 2 * nq + nk, nk);

  const int64_t heads = q.size(1), kv_heads = k.size(1), group = heads / kv_heads, dv = v.size(2);
  auto padded = [](const torch::Tensor& t, const torch::Tensor& rows, const torch::Tensor& slots, int64_t n) {
    std::vector<int64_t> shape = t.sizes().vec();
    shape[0] = n;
    return torch::zeros(shape, t.options()).index_copy_(0, slots, t.index_select(0, rows));
  };
  // A padded query sits after every key and a padded key after every query: masked either way.
  const int64_t never = std::numeric_limits<int64_t>::max();
  auto padded_pos = [&](const torch::Tensor& pos, const torch::Tensor& rows, const torch::Tensor& slots, int64_t n) {
    return torch::full({n}, never, pos.options()).index_copy_(0, slots, pos.index_select(0, rows));
  };
  const torch::Tensor qp = padded_pos(q_tokens.pos, q_row, q_slot, S * max_q).view({S, 1, 1, max_q, 1});
  const torch::Tensor kp = padded_pos(k_tokens.pos, k_row, k_slot, S * max_k).view({S, 1, 1, 1, max_k});
  // [S, Hkv, group * Lq, D] against [S, Hkv, D, Lk]: query head h uses KV head h / group.
  const torch::Tensor qs = padded(q, q_row, q_slot, S * max_q)
                               .view({S, max_q, kv_heads, group, q.size(2)})
                               .permute({0, 2, 3, 1, 4})
                               .reshape({S, kv_heads, group * max_q, q.size(2)});
  const torch::Tensor ks = padded(k, k_row, k_slot, S * max_k).view({S, max_k, kv_heads, k.size(2)}).permute({0, 2, 3, 1});
  const torch::Tensor vs = padded(v, k_row, k_slot, S * max_k).view({S, max_k, kv_heads, dv}).permute({0, 2, 1, 3});
  torch::Tensor scores = (matmul_acc32(qs, ks) * scale).view({S, kv_heads, group, max_q, max_k});
  scores = scores.masked_fill(kp > qp, -std::numeric_limits<float>::infinity());
  const torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  const torch::Tensor o = matmul_acc32(probs.view({S, kv_heads, group * max_q, max_k}), vs)  // [S, Hkv, g * Lq, Dv]
                              .view({S, kv_heads, group, max_q, dv})
                              .permute({0, 3, 1, 2, 4})
                              .reshape({S * max_q, heads, dv});
  return torch::zeros({q.size(0), heads, dv}, q.options()).index_copy_(0, q_row, o.index_select(0, q_slot));
}

}  // namespace

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const TokenPlacement& q_tokens, const TokenPlacement& k_tokens, double scale,
                               bool fused, int64_t max_scores) {
  // The same placement on both sides: each sequence's tokens in position order, so the mask is
  // the plain causal one (and every query row sees at least itself).
  const bool self_causal = &q_tokens == &k_tokens;
#if TORCH_VERSION_MAJOR < 2
  (void)fused;  // no scaled_dot_product_attention in LibTorch 1.x: the plain path
#endif
  const int64_t heads = q.size(1), kv_heads = k.size(1);
  TORCH_CHECK(heads % kv_heads == 0, "query heads ", heads, " not a multiple of kv heads ", kv_heads);
  const int64_t group = heads / kv_heads;
  if (q.size(0) == 0) return torch::zeros({0, heads, v.size(2)}, q.options());
  // Rows regrouped by sequence once; each sequence is then a slice.
  SequenceRows q_rows = group_by_sequence(q_tokens);
  std::optional<SequenceRows> own_k_rows;  // only when the keys are placed apart from the queries
  if (&q_tokens != &k_tokens) own_k_rows = group_by_sequence(k_tokens);
  SequenceRows& k_rows = own_k_rows ? *own_k_rows : q_rows;
  if (&q_tokens != &k_tokens) {
    torch::Tensor out = batched_attention(q, k, v, q_tokens, k_tokens, q_rows, k_rows, scale);
    if (out.defined()) return out;
  }
  q_rows.upload(q.device()), k_rows.upload(k.device());  // once when k_rows is q_rows
  const torch::Tensor q_all = q_rows.gather(q), q_pos = q_rows.gather(q_tokens.pos);
  const torch::Tensor k_all = k_rows.gather(k), v_all = k_rows.gather(v), k_pos = k_rows.gather(k_tokens.pos);
  // Rows whose sequence has no keys stay zero; in self-attention every row sees itself, so every
  // row is written (a zero fill of a prefill's output was ~22 us a layer at 8192 tokens).
  torch::Tensor grouped_out = self_causal ? torch::empty({q.size(0), heads, v.size(2)}, q.options())
                                          : torch::zeros({q.size(0), heads, v.size(2)}, q.options());
  // LibTorch 2.5 on lets scaled_dot_product_attention read each KV head for its group of query
  // heads; before, the keys and values were repeated per query head (Qwen3: 8x), two copies of
  // ~17 MB a 2048-token sequence and layer (0.72 ms of an 8192-token 4-layer prefill on an H200).
  const bool gqa_in_sdpa = fused && LB_SDPA_TAKES_GROUPS && group > 1;
#if TORCH_VERSION_MAJOR >= 2
  // [B, H, S, D] each (the flash and memory-efficient kernels take that shape only): causal without
  // a mask, else the mask alone says which keys a query sees.
  auto sdpa = [&](const torch::Tensor& qs, const torch::Tensor& ks, const torch::Tensor& vs,
                  const std::optional<torch::Tensor>& mask) {
#if LB_SDPA_TAKES_GROUPS
    return torch::scaled_dot_product_attention(qs, ks, vs, mask, 0.0, !mask.has_value(), scale, gqa_in_sdpa);
#else
    return torch::scaled_dot_product_attention(qs, ks, vs, mask, 0.0, !mask.has_value(), scale);
#endif
  };
  // Self-attention: sequences i .. i + n - 1 of one length in one call, batch n ([n, H, len, D]).
  auto self_attend = [&](size_t i, size_t n) {
    const int64_t first = q_rows.begin[i], len = q_rows.count(i), rows = int64_t(n) * len;
    auto batched = [&](const torch::Tensor& t) {  // [rows, H, D] -> [n, H, len, D]
      return t.narrow(0, first, rows).view({int64_t(n), len, t.size(1), t.size(2)}).transpose(1, 2);
    };
    torch::Tensor qs = batched(q_all), ks = batched(k_all), vs = batched(v_all);
    if (group > 1 && !gqa_in_sdpa) {
      ks = ks.repeat_interleave(group, 1);
      vs = vs.repeat_interleave(group, 1);
    }
    const torch::Tensor o = sdpa(qs, ks, vs, std::nullopt);
    grouped_out.narrow(0, first, rows).view({int64_t(n), len, heads, v.size(2)}).copy_(o.transpose(1, 2));
  };
#endif
  for (size_t i = 0; i < q_rows.ids.size(); ++i) {
    const int64_t first_q = q_rows.begin[i], nq = q_rows.count(i);
#if TORCH_VERSION_MAJOR >= 2
    if (fused && self_causal) {
      size_t n = 1;
      while (i + n < q_rows.ids.size() && q_rows.count(i + n) == nq) ++n;
      self_attend(i, n);
      i += n - 1;
      continue;
    }
#endif
    const int64_t j = k_rows.find(q_rows.ids[i]);
    if (j < 0) continue;  // no keys: nothing to attend to (the rows stay zero)
    const int64_t first_k = k_rows.begin[size_t(j)], nk = k_rows.count(size_t(j));
    torch::Tensor qs = q_all.narrow(0, first_q, nq).transpose(0, 1);  // [Hq, nq, D]
    torch::Tensor ks = k_all.narrow(0, first_k, nk).transpose(0, 1);  // [Hkv, nk, D]
    torch::Tensor vs = v_all.narrow(0, first_k, nk).transpose(0, 1);
    const torch::Tensor qp = q_pos.narrow(0, first_q, nq), kp = k_pos.narrow(0, first_k, nk);
    if (group > 1 && !gqa_in_sdpa) {
      ks = ks.repeat_interleave(group, 0);
      vs = vs.repeat_interleave(group, 0);
    }
    torch::Tensor o;  // [Hq, nq, Dv]
#if TORCH_VERSION_MAJOR >= 2
    if (fused) {
      // Queries apart from their keys: true where the query may see the key. A batch dimension of 1.
      const torch::Tensor mask = kp.unsqueeze(0) <= qp.unsqueeze(1);
      o = sdpa(qs.unsqueeze(0), ks.unsqueeze(0), vs.unsqueeze(0), mask).squeeze(0);
    }
#endif
    if (!o.defined()) {
      // A long sequence's whole scores with their masked and softmax copies (DeepSeek-V3 in f32: 128
      // heads, 3001 tokens, 4.6 GB each) next to a model's f32 weights ran a GPU out of memory.
      const int64_t block = std::max<int64_t>(1, max_scores / std::max<int64_t>(1, qs.size(0) * nk));
      std::vector<torch::Tensor> parts;
      for (int64_t first = 0; first < nq; first += block) {
        const int64_t rows = std::min(block, nq - first);
        const torch::Tensor qb = block >= nq ? qs : qs.narrow(1, first, rows);
        const torch::Tensor qpb = block >= nq ? qp : qp.narrow(0, first, rows);
        torch::Tensor scores = matmul_acc32(qb, ks.transpose(1, 2)) * scale;  // [Hq, rows, nk]
        const torch::Tensor future = kp.unsqueeze(0) > qpb.unsqueeze(1);
        scores = scores.masked_fill(future.unsqueeze(0), -std::numeric_limits<float>::infinity());
        const torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
        parts.push_back(matmul_acc32(probs, vs));
      }
      o = parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
    }
    grouped_out.narrow(0, first_q, nq).copy_(o.transpose(0, 1));
  }
  if (!q_rows.device_order.defined()) return grouped_out;
  return torch::empty_like(grouped_out).index_copy_(0, q_rows.device_order, grouped_out);  // order covers every row
}

}  // namespace lb
