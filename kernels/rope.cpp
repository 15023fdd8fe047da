#include "kernels/rope.h"

#include <algorithm>
#include <cmath>

#ifdef LB_HAVE_CUDA
#include "kernels/cuda/rope_table.h"
#include "kernels/cuda_glue.h"
#endif

namespace lb {

namespace {

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// The number of the rotary dimension whose wavelength completes `rotations` turns over the
// original context (YaRN's correction range ends).
double correction_dim(double rotations, int64_t dim, double base, int64_t max_position) {
  return (double(dim) * std::log(double(max_position) / (rotations * 2.0 * M_PI))) / (2.0 * std::log(base));
}

}  // namespace

Rope make_rope(const ModelConfig& c) {
  Rope rope;
  rope.dim = c.family == ModelFamily::DeepseekV3 ? c.qk_rope_head_dim : c.head_dim;
  rope.interleaved = c.family == ModelFamily::DeepseekV3 && c.rope_interleave;
  // Same float32 arithmetic as transformers: base ** (arange(0, dim, 2) / dim).
  torch::Tensor exponents = torch::arange(0, rope.dim, 2, torch::kInt64).to(torch::kFloat32) / float(rope.dim);
  torch::Tensor pos_freqs = torch::pow(float(c.rope.theta), exponents);
  if (c.rope.type == "default") {
    rope.inv_freq = 1.0 / pos_freqs;
    return rope;
  }
  const RopeConfig& y = c.rope;
  if (y.attention_factor) rope.attention_factor = *y.attention_factor;
  else if (y.mscale != 0.0 && y.mscale_all_dim != 0.0)
    rope.attention_factor = yarn_get_mscale(y.factor, y.mscale) / yarn_get_mscale(y.factor, y.mscale_all_dim);
  else rope.attention_factor = yarn_get_mscale(y.factor, 1.0);

  double low = correction_dim(y.beta_fast, rope.dim, y.theta, y.original_max_position);
  double high = correction_dim(y.beta_slow, rope.dim, y.theta, y.original_max_position);
  if (y.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(rope.dim - 1));
  if (low == high) high += 0.001;
  torch::Tensor ramp =
      ((torch::arange(rope.dim / 2, torch::kFloat32) - float(low)) / float(high - low)).clamp(0, 1);
  torch::Tensor extrapolation = 1.0 - ramp;
  torch::Tensor inv_extra = 1.0 / pos_freqs;
  torch::Tensor inv_inter = 1.0 / (float(y.factor) * pos_freqs);
  rope.inv_freq = inv_inter * (1.0 - extrapolation) + inv_extra * extrapolation;
  return rope;
}

CosSin rope_cos_sin(const Rope& rope, const torch::Tensor& positions, torch::ScalarType dtype, bool fused) {
#ifdef LB_HAVE_CUDA
  const torch::Tensor probe = torch::empty({0}, positions.options().dtype(dtype));
  if (fused && kernel_dtype(probe) && positions.scalar_type() == torch::kInt64 && positions.dim() == 1 &&
      rope.inv_freq.device() == positions.device() && rope.inv_freq.scalar_type() == torch::kFloat32 &&
      rope.inv_freq.is_contiguous()) {
    const c10::cuda::CUDAGuard guard(positions.device());
    const torch::Tensor pos = positions.contiguous();
    const int64_t half = rope.inv_freq.size(0);
    CosSin cs{torch::empty({pos.size(0), 2 * half}, probe.options()), torch::empty({pos.size(0), 2 * half}, probe.options())};
    check_launch(cuda::rope_table(*kernel_dtype(probe), pos.data_ptr<int64_t>(), rope.inv_freq.data_ptr<float>(),
                                  pos.size(0), half, float(rope.attention_factor), cs.cos.data_ptr(), cs.sin.data_ptr(),
                                  stream_of(pos)),
                 "rotary table kernel");
    return cs;
  }
#endif
  (void)fused;
  torch::Tensor inv = rope.inv_freq.to(positions.device());
  torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(1) * inv.unsqueeze(0);  // [T, dim/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  const float f = float(rope.attention_factor);
  return {(emb.cos() * f).to(dtype), (emb.sin() * f).to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const CosSin& cs, bool interleaved) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor cos = cs.cos.unsqueeze(1), sin = cs.sin.unsqueeze(1);  // broadcast over heads
  if (interleaved) {
    torch::Tensor c = cos.narrow(-1, 0, half), s = sin.narrow(-1, 0, half);
    using torch::indexing::Slice;
    torch::Tensor x1 = x.index({"...", Slice(0, torch::indexing::None, 2)});
    torch::Tensor x2 = x.index({"...", Slice(1, torch::indexing::None, 2)});
    return torch::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
  }
  torch::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  torch::Tensor rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace lb
