#pragma once
// The opening of a decode step in one CUDA launch: each query's position (its slot's length), the
// length it reads, its KV cache row, and its embedding row; then every slot's length moves on by
// the step's token. On the plain path these are five LibTorch kernels (index_select, two adds, the
// embedding's index_select, and the lengths' add at the end of the step), each of which waits for
// the whole previous kernel, where our chained kernels start early.
#include <torch/torch.h>

#include <optional>

namespace lb {

struct DecodeStart {
  torch::Tensor x;         // [n, hidden]: table rows ids
  torch::Tensor pos;       // int64 [n]: lengths[slot] before the step
  torch::Tensor read_len;  // int64 [n]: pos + 1
  torch::Tensor row;       // int64 [n]: pos + capacity * slot (KvCache::row_of)
};

// As the plain ops do: pos = lengths.index_select(0, slot), read_len = pos + 1,
// row = pos + capacity * slot, x = table.index_select(0, ids), then lengths += 1 (every slot).
// `slot` must not repeat (one query a slot, as a decode step has). Returns nothing, having done
// nothing, unless the tensors are on one CUDA device with int64 ids, slots and lengths, a table of
// 16-byte rows, and at least one query.
std::optional<DecodeStart> decode_step_start_fused(const torch::Tensor& ids, const torch::Tensor& table,
                                                   torch::Tensor& lengths, const torch::Tensor& slot,
                                                   int64_t capacity);

}  // namespace lb
