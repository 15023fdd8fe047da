#include "harness/model/random_weights.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

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

// Uniform values in (-1, 1) * sqrt(3) for the elements at linear indices `idx`, as float32.
torch::Tensor uniform_of(const torch::Tensor& idx, uint64_t key) {
  const int64_t key_lo = int64_t(key & 0xFFFFFFFFULL), key_hi = int64_t(key >> 32);
  torch::Tensor h = mix32(torch::bitwise_xor(torch::bitwise_and(idx, kLow32), key_lo));
  h = mix32(torch::bitwise_xor(torch::bitwise_xor(h, shift_right(idx, 32)), key_hi));
  // 24 high bits -> (0, 1) exactly representable in float32, then centred with unit variance.
  torch::Tensor u = (shift_right(h, 8).to(torch::kFloat32) + 0.5f) * float(1.0 / 16777216.0);
  return (u * 2.0f - 1.0f) * float(std::sqrt(3.0));
}

// Linear indices (into the full row-major tensor) of rows first .. first + rows - 1 (along dim 0)
// of `slice` of it (or of the whole tensor), shaped like them.
torch::Tensor block_indices(const std::vector<int64_t>& shape, const std::optional<Slice>& slice, int64_t first,
                            int64_t rows, torch::Device device) {
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  if (shape.empty()) return torch::zeros({}, opts);
  const int64_t dims = int64_t(shape.size());
  torch::Tensor idx;
  int64_t stride = 1;
  for (int64_t d = dims - 1; d >= 0; --d) {
    int64_t start = 0, length = shape[d];
    if (slice && slice->dim == d) start = slice->start, length = slice->length;
    if (d == 0) start += first, length = rows;
    std::vector<int64_t> view(dims, 1);
    view[d] = length;
    const torch::Tensor part = ((torch::arange(length, opts) + start) * stride).view(view);
    idx = idx.defined() ? idx + part : part;
    stride *= shape[d];
  }
  return idx;
}

// The elements of `slice` of the tensor (or of all of it), as make(their uniform values) in
// `dtype`, made a block of dim-0 rows of about `block_elements` elements at a time.
template <typename Make>
torch::Tensor fill_by_blocks(const std::string& name, uint64_t seed, const std::vector<int64_t>& shape,
                             const std::optional<Slice>& slice, int64_t block_elements, torch::ScalarType dtype,
                             torch::Device device, const Make& make) {
  std::vector<int64_t> out_shape = shape;
  if (slice) out_shape[slice->dim] = slice->length;
  torch::Tensor out = torch::empty(out_shape, torch::TensorOptions().dtype(dtype).device(device));
  const uint64_t key = fnv1a(name, seed);
  const auto uniform = [&](int64_t first, int64_t rows) {
    return uniform_of(block_indices(shape, slice, first, rows, device), key);
  };
  if (out.dim() == 0) return out.copy_(make(uniform(0, 1)));
  const int64_t row_elements = out.size(0) ? out.numel() / out.size(0) : 1;
  const int64_t block = std::max<int64_t>(1, block_elements / std::max<int64_t>(1, row_elements));
  for (int64_t first = 0; first < out.size(0); first += block) {
    const int64_t rows = std::min(block, out.size(0) - first);
    out.narrow(0, first, rows).copy_(make(uniform(first, rows)));
  }
  return out;
}

}  // namespace

torch::Tensor hashed_uniform(const std::string& name, uint64_t seed, const std::vector<int64_t>& shape,
                             torch::Device device, std::optional<Slice> slice, int64_t block_elements) {
  torch::NoGradGuard no_grad;
  return fill_by_blocks(name, seed, shape, slice, block_elements, torch::kFloat32, device,
                        [](const torch::Tensor& u) { return u; });
}

torch::Tensor random_tensor(const TensorSpec& spec, const ModelConfig& config, uint64_t seed,
                            torch::ScalarType dtype, torch::Device device, std::optional<Slice> slice,
                            int64_t block_elements) {
  torch::NoGradGuard no_grad;
  const double fan_in = spec.shape.size() > 1 ? double(spec.shape.back()) : 1.0;
  const auto init = [&](const torch::Tensor& u) -> torch::Tensor {
    switch (spec.init) {
      case InitKind::Linear: return u * float(1.0 / std::sqrt(fan_in));
      case InitKind::OutputLinear: return u * float(1.0 / std::sqrt(fan_in * 2.0 * double(config.num_layers)));
      case InitKind::Embedding: return u;
      case InitKind::Norm: return 1.0f + u * float(0.1 / std::sqrt(3.0));
      case InitKind::Bias: return u * float(0.05 / std::sqrt(3.0));
    }
    throw std::logic_error("unhandled InitKind");
  };
  return fill_by_blocks(spec.name, seed, spec.shape, slice, block_elements, dtype, device, init);
}

}  // namespace lb
