#include "harness/model/parallel_fit.h"

#include "harness/runtime/errors.h"

#include <string>

namespace lb {

namespace {

void rule(bool ok, const std::string& message) {
  if (!ok) throw InputError("parallel config: " + message);
}

std::string n(int v) { return std::to_string(v); }

}  // namespace

void validate(const ParallelConfig& p, const ModelConfig& model) {
  validate(p);
  if (model.num_experts > 0)
    rule(model.num_experts % p.moe_ep == 0, "moe_ep (" + n(p.moe_ep) + ") must divide the number of experts (" +
                                                n(int(model.num_experts)) + ")");
  rule(model.num_heads % p.attn_tp() == 0, "attn_tp (" + n(p.attn_tp()) + ") must divide the attention heads (" +
                                               n(int(model.num_heads)) + ")");
}

}  // namespace lb
