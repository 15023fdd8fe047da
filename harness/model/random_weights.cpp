#include "harness/model/random_weights.h"

#include <cmath>

namespace lb {

namespace {

constexpr int64_t kLow32 = 0xFFFFFFFFLL;

uint64_t fnv1a(const std::string& text, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  return h;
}

// Low 32 bits of x * c for x, c < 2^32, without overflowing int64 (c split in 16-bit halves).
torch::Tensor mul_low32(const torch::Tensor& x, int64_t c) {
  const int64_t c_lo = c & 0xFFFF, c_hi = c >> 16;
  torch::Tensor hi = torch::bitwise_and(x * c_hi, 0xFFFF) * 65536;
  return torch::bitwise_and(x * c_lo + hi, kLow32);
}

torch::Tensor shift_right(const torch::Tensor& x, int64_t bits) {
  return torch::div(x, int64_t(1) << bits, "floor");
}

// A 32-bit integer mixer (xorshift-multiply, "lowbias32" constants); inputs and outputs in [0, 2^32).
torch::Tensor mix32(torch::Tensor x) {
  x = torch::bitwise_xor(x, shift_right(x, 16));
  x = mul_low32(x, 0x7feb352dLL);
  x = torch::bitwise_xor(x, shift_right(x, 15));
  x = mul_low32(x, 0x846ca68bLL);
  x = torch::bitwise_xor(x, shift_right(x, 16));
  return x;
}

// Linear indices (into the full row-major tensor) of the elements of `slice`, shaped like it.
torch::Tensor slice_indices(const std::vector<int64_t>& shape, const std::optional<Slice>& slice,
                            torch::Device device) {
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  if (!slice) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return torch::arange(n, opts).view(shape);
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < slice->dim; ++d) outer *= shape[d];
  for (size_t d = slice->dim + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t dim_size = shape[slice->dim];
  auto o = torch::arange(outer, opts).view({outer, 1, 1}) * (dim_size * inner);
  auto j = (torch::arange(slice->length, opts) + slice->start).view({1, slice->length, 1}) * inner;
  auto i = torch::arange(inner, opts).view({1, 1, inner});
  std::vector<int64_t> out_shape = shape;
  out_shape[slice->dim] = slice->length;
  return (o + j + i).view(out_shape);
}

}  // namespace

torch::Tensor hashed_uniform(const std::string& name, uint64_t seed, const std::vector<int64_t>& shape,
                             torch::Device device, std::optional<Slice> slice) {
  torch::NoGradGuard no_grad;
  const uint64_t key = fnv1a(name, seed);
  const int64_t key_lo = int64_t(key & 0xFFFFFFFFULL), key_hi = int64_t(key >> 32);
  torch::Tensor idx = slice_indices(shape, slice, device);
  torch::Tensor h = mix32(torch::bitwise_xor(torch::bitwise_and(idx, kLow32), key_lo));
  h = mix32(torch::bitwise_xor(torch::bitwise_xor(h, shift_right(idx, 32)), key_hi));
  // 24 high bits -> (0, 1) exactly representable in float32, then centred with unit variance.
  torch::Tensor u = (shift_right(h, 8).to(torch::kFloat32) + 0.5f) * float(1.0 / 16777216.0);
  return (u * 2.0f - 1.0f) * float(std::sqrt(3.0));
}

torch::Tensor random_tensor(const TensorSpec& spec, const ModelConfig& config, uint64_t seed,
                            torch::ScalarType dtype, torch::Device device, std::optional<Slice> slice) {
  torch::Tensor u = hashed_uniform(spec.name, seed, spec.shape, device, slice);
  const double fan_in = spec.shape.size() > 1 ? double(spec.shape.back()) : 1.0;
  torch::Tensor w;
  switch (spec.init) {
    case InitKind::Linear: w = u * float(1.0 / std::sqrt(fan_in)); break;
    case InitKind::OutputLinear:
      w = u * float(1.0 / std::sqrt(fan_in * 2.0 * double(config.num_layers)));
      break;
    case InitKind::Embedding: w = u; break;
    case InitKind::Norm: w = 1.0f + u * float(0.1 / std::sqrt(3.0)); break;
    case InitKind::Bias: w = u * float(0.05 / std::sqrt(3.0)); break;
  }
  return w.to(dtype);
}

}  // namespace lb
