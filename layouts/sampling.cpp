#include "layouts/sampling.h"

#include "harness/runtime/errors.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace lb {

void validate(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw InputError("--temperature must be >= 0 (0 is greedy), got " + std::to_string(o.temperature));
  if (o.top_k < 0) throw InputError("--top-k must be >= 0 (0 is no limit), got " + std::to_string(o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1)) throw InputError("--top-p must be in (0, 1], got " + std::to_string(o.top_p));
}

Sampler::Sampler(SamplingOptions options) : options_(options), rng_(options.seed) {}

int64_t Sampler::next(const torch::Tensor& logits) {
  const torch::Tensor row = logits.to(torch::kFloat64).contiguous();
  const double* l = row.data_ptr<double>();
  const int64_t n = row.numel();
  if (options_.temperature == 0) return int64_t(std::max_element(l, l + n) - l);  // first maximum

  // Most likely first; ties by id, so the order is the same everywhere.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
  const int64_t k = options_.top_k > 0 ? std::min(options_.top_k, n) : n;
  std::vector<double> p(k);
  for (int64_t i = 0; i < k; ++i) p[i] = std::exp((l[order[i]] - l[order[0]]) / options_.temperature);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  int64_t keep = 0;
  for (double mass = 0; keep < k && (keep == 0 || mass < options_.top_p * total); ++keep) mass += p[keep];
  const double kept = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  // The draw: 53 random bits as a uniform in [0, 1), not std::uniform_real_distribution, whose
  // algorithm the standard leaves to the library.
  const double u = double(rng_() >> 11) * 0x1.0p-53 * kept;
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) {
    mass += p[i];
    if (u < mass) return order[i];
  }
  return order[keep - 1];
}

}  // namespace lb
