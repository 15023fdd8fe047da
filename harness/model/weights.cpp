#include "harness/model/weights.h"

#include "harness/model/checkpoint.h"
#include "harness/runtime/errors.h"
#include "harness/model/random_weights.h"

namespace lb {

namespace {

class RandomWeights : public WeightSource {
 public:
  RandomWeights(const ModelConfig& config, uint64_t seed) : config_(config), seed_(seed) {}
  torch::Tensor load(const TensorSpec& spec, torch::ScalarType dtype, torch::Device device,
                     std::optional<Slice> slice) const override {
    return random_tensor(spec, config_, seed_, dtype, device, slice);
  }
  std::string describe() const override { return "random(seed=" + std::to_string(seed_) + ")"; }

 private:
  ModelConfig config_;
  uint64_t seed_;
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class CheckpointWeights : public WeightSource {
 public:
  // Opening checks every tensor the model needs (presence and shape) from the headers alone.
  CheckpointWeights(const ModelConfig& config, const std::string& dir) : config_(config), checkpoint_(dir) {
    for (const TensorSpec& spec : model_tensors(config)) {
      const TensorInfo& info = checkpoint_.info(spec.name);
      if (info.shape != spec.shape)
        throw InputError(dir + ": tensor '" + spec.name + "' has shape " + shape_string(info.shape) + ", expected " +
                         shape_string(spec.shape) + " from the config");
      check_dtype(spec, info);
    }
  }

  torch::Tensor load(const TensorSpec& spec, torch::ScalarType dtype, torch::Device device,
                     std::optional<Slice> slice) const override {
    const std::string scale_name = spec.name + "_scale_inv";
    if (!checkpoint_.has(scale_name))
      return checkpoint_.read_expect(spec.name, spec.shape, dtype, slice).to(device);
    return dequantize(spec, scale_name, slice).to(device, dtype);
  }
  std::string describe() const override { return checkpoint_.dir(); }
  std::string fingerprint() const override { return checkpoint_.fingerprint(); }

 private:
  // Every weight of these models is a float: an integer label (I32, U8, BOOL) on one would be
  // converted to numbers silently and run. FP8 needs its scale_inv beside it to mean anything.
  void check_dtype(const TensorSpec& spec, const TensorInfo& info) const {
    const std::string where = checkpoint_.dir() + ": tensor '" + spec.name + "' is stored as " + to_string(info.dtype);
    if (is_float(info.dtype)) return;
    if (info.dtype != StDtype::F8_E4M3)
      throw InputError(where + ", but the model's weights are floating point (F32, F16, BF16, F64, or F8_E4M3 with "
                       "a _scale_inv)");
    const std::string scale = spec.name + "_scale_inv";
    if (!checkpoint_.has(scale))
      throw InputError(where + " without its scale tensor '" + scale + "': FP8 values alone are not the weights");
    const TensorInfo& scale_info = checkpoint_.info(scale);
    if (!is_float(scale_info.dtype))
      throw InputError(checkpoint_.dir() + ": tensor '" + scale + "' is stored as " + to_string(scale_info.dtype) +
                       ", but a scale is floating point (F32, F16, BF16, F64)");
  }

  static bool is_float(StDtype d) {
    return d == StDtype::F32 || d == StDtype::BF16 || d == StDtype::F16 || d == StDtype::F64;
  }

  // FP8 weight times its per-block scale_inv (block [br, bc]; edge blocks may be partial).
  torch::Tensor dequantize(const TensorSpec& spec, const std::string& scale_name, std::optional<Slice> slice) const {
    if (spec.shape.size() != 2 || config_.fp8_block_rows == 0)
      throw InputError(checkpoint_.dir() + ": tensor '" + scale_name +
                       "' found but the config has no quantization_config.weight_block_size");
    const int64_t br = config_.fp8_block_rows, bc = config_.fp8_block_cols;
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    std::vector<int64_t> scale_shape = {(rows + br - 1) / br, (cols + bc - 1) / bc};
    torch::Tensor w = checkpoint_.read_expect(spec.name, spec.shape, torch::kFloat32, slice);
    torch::Tensor scale = checkpoint_.read_expect(scale_name, scale_shape, torch::kFloat32);
    scale = scale.repeat_interleave(br, 0).repeat_interleave(bc, 1).narrow(0, 0, rows).narrow(1, 0, cols);
    if (slice) scale = scale.narrow(slice->dim, slice->start, slice->length);
    return w * scale;
  }

  ModelConfig config_;
  Checkpoint checkpoint_;
};

}  // namespace

std::unique_ptr<WeightSource> open_weights(const ModelConfig& config, const std::string& checkpoint_dir,
                                           uint64_t seed) {
  if (checkpoint_dir.empty()) return std::make_unique<RandomWeights>(config, seed);
  return std::make_unique<CheckpointWeights>(config, checkpoint_dir);
}

}  // namespace lb
