#pragma once
// A HF checkpoint directory: model.safetensors.index.json (weight_map: tensor -> shard file) with
// its shards, or one model.safetensors. Callers ask by tensor name and never see shards.
#include "harness/model/safetensors.h"

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lb {

class Checkpoint {
 public:
  // dir must contain model.safetensors.index.json (preferred when both exist) or model.safetensors.
  // The index and the existence of every shard are checked now; shards are opened (mmap, header
  // validated) on first use and kept open. Throws InputError naming the directory or file.
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return shard_of_.count(name) != 0; }
  // InputError "checkpoint <dir> has no tensor '<name>'" if absent.
  const TensorInfo& info(const std::string& name) const;
  torch::Tensor read(const std::string& name, torch::ScalarType out, std::optional<Slice> slice = std::nullopt) const;
  // "checkpoint:<16 hex digits>": FNV-1a over every tensor's name, dtype and shape and the bytes of
  // every 1-D tensor (norm weights, biases: small, and changed by any fine-tune), so one checkpoint
  // copied or linked to another path has the same fingerprint and a different checkpoint does not.
  // Opens every shard.
  std::string fingerprint() const;
  // Reads after checking the full tensor's shape: InputError
  // "<file>: tensor '<name>' has shape [a, b], expected [c, d]".
  torch::Tensor read_expect(const std::string& name, const std::vector<int64_t>& shape, torch::ScalarType out,
                            std::optional<Slice> slice = std::nullopt) const;

 private:
  // The open shard holding `name` (which must be in shard_of_), opening it on first use.
  const SafetensorsFile& shard_for(const std::string& name) const;

  std::string dir_;
  std::map<std::string, std::string> shard_of_;  // tensor name -> shard file name
  // Opened lazily from const methods, possibly by several threads (one per rank) at once.
  mutable std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;  // by file name
};

}  // namespace lb
