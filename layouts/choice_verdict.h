#pragma once
// The two-pass verdict on discrete choices (top-k picks, routed experts). A layout computes the
// same sums in another order, so a choice made on a near-tie may go one way in the reference and
// the other in the layout, and the row that flipped is then rightly far from the reference. So a
// layout runs twice:
//   1. on the reference's choices: the verdict on its continuous math, every output at the
//      relative-L2 threshold;
//   2. on its own choices: it passes when, at the first output where rows move past the
//      threshold, at most kMaxOwnChoiceRowShare of the rows did. A flip on a near-tie moves single
//      rows (and, a layer later, the rows that read them); choosing from wrong inputs moves most.
// Rows are compared where they live: each rank sums over its own rows, in float64, and rank 0
// combines the sums, so no output is ever gathered whole (V4-Flash's logits of 4096 tokens are
// 4 GB in float64). DeepSeek-V4's check takes this step (harness/cli/deepseek_v4_family.cpp); a
// family whose layouts can run on the reference's choices can take it too.
#include "harness/runtime/communicator.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace lb {

constexpr double kMaxOwnChoiceRowShare = 0.01;

// One output of one layout run against the reference, over every rank's rows.
struct OutputVerdict {
  std::string output;  // "layer 3", "final_norm", "logits"
  double max_abs = 0, rel_l2 = 0, cosine = 0;
  bool finite = true, pass = false;
  int64_t rows = 0, rows_past = 0;  // over every rank's rows; rows past the threshold on their own
  double worst_row = 0;             // the largest relative L2 of one row
  int64_t worst_row_position = -1;  // its token's position in the sequence
};

// Collective over `world`; the verdicts are complete on rank 0. `actual[k]` holds this rank's rows
// of output `names[k]` and `reference[k]` the whole reference output in original order;
// `positions` (int64) are the rows' positions in it. Every rank holds the same number of rows.
std::vector<OutputVerdict> compare_rows(Communicator& world, const std::vector<std::string>& names,
                                        const std::vector<torch::Tensor>& actual,
                                        const std::vector<torch::Tensor>& reference, const torch::Tensor& positions,
                                        double threshold);

struct ChoiceVerdict {
  std::vector<OutputVerdict> outputs;      // on the reference's choices: the verdict's numbers
  std::vector<OutputVerdict> own_outputs;  // on the layout's own choices
  std::string own_first_moved;             // the first output with rows past the threshold there ("" for none)
  bool pass = false;
};

// Both passes' verdicts (rank 0's), judged as above.
ChoiceVerdict two_pass_verdict(std::vector<OutputVerdict> on_reference_choices,
                               std::vector<OutputVerdict> on_own_choices);

// The table of both passes side by side, then the first divergence and where rows first moved.
// `choices` names what the first pass was given ("indexer picks and experts").
std::string format_choice_verdict(const ChoiceVerdict& v, double threshold, const std::string& choices);

// In the other checks' shape, which `report` and `diff` read: "layers" (the first `num_layers`
// outputs, each with its index) and, beside them, "head" (the outputs after the layers); the
// own-choices pass under "own_choices", and "pass".
nlohmann::json to_json(const ChoiceVerdict& v, int64_t num_layers, double threshold, const std::string& choices);

}  // namespace lb
