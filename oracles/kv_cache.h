#pragma once
// The keys a batch's attention has seen, kept for generation in tensors allocated once per batch
// shape: per layer, each part is [slots, capacity, ...] with one sequence per slot (Qwen: keys and
// values after RoPE, [.., Hkv, D]; DeepSeek: the MLA latent [.., R] and the rotary key [.., P]).
// lengths() (int64 [slots], on the cache's device) counts each slot's positions. Nothing here reads a
// device value on the host, so a decode step that writes and reads the cache can be captured in a
// CUDA graph and replayed.
#include <torch/torch.h>

#include <vector>

namespace lb {

class KvCache {
 public:
  KvCache() = default;
  // `part_shapes`: each part's shape after [slots, capacity].
  KvCache(int64_t layers, int64_t slots, int64_t capacity, const std::vector<std::vector<int64_t>>& part_shapes,
          const torch::TensorOptions& options);

  bool allocated() const { return !parts_.empty(); }
  int64_t slots() const { return slots_; }
  int64_t capacity() const { return capacity_; }
  // Layer `layer`'s parts, [slots, capacity, ...] each.
  const std::vector<torch::Tensor>& layer(int64_t layer) const { return parts_.at(size_t(layer)); }
  // The flat row index of (slot[i], pos[i]) (int64 [n] on the device), for write().
  // pos + capacity * slot in one launch (a decode step makes it each time).
  torch::Tensor row_of(const torch::Tensor& slot, const torch::Tensor& pos) const {
    return torch::add(pos, slot, capacity_);
  }
  // Writes row i of every part of layer `layer` at flat row at[i] (row_of: one index for every layer
  // of a step, since index_copy_ needs no host value, unlike slicing by length).
  void write(int64_t layer, const std::vector<torch::Tensor>& rows, const torch::Tensor& at);
  torch::Tensor& lengths() { return lengths_; }
  const torch::Tensor& lengths() const { return lengths_; }

 private:
  int64_t slots_ = 0, capacity_ = 0;
  std::vector<std::vector<torch::Tensor>> parts_;  // [layer][part]
  torch::Tensor lengths_;
};

// What one generation step does with a layer's cache: the key rows it adds (their slots and
// positions) and, in a decode step, which slot each query reads and how many of its positions.
// A prefill (read_slot undefined) attends to its own keys only: its slots start empty.
struct CacheStep {
  KvCache* cache = nullptr;
  torch::Tensor write_row;              // int64 [key rows]: KvCache::row_of(slot, position)
  torch::Tensor read_slot, read_len;    // int64 [query rows]
  bool decode() const { return read_slot.defined(); }
};

}  // namespace lb
