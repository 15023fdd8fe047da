#pragma once
// The "post_processor" of a tokenizer.json, for a single sequence: the special tokens it puts
// before and after the ids (a BOS, an EOS) when the caller asks for special tokens. Supported:
// TemplateProcessing (its "single" template), RobertaProcessing and BertProcessing (cls ... sep),
// ByteLevel (which only moves offsets) and a Sequence of these. Others are refused by name.
#include "datasets/tokenizer_file.h"

#include <cstdint>
#include <vector>

namespace lb {

struct SpecialTokenFrame {
  std::vector<int64_t> before, after;
};

// `part` is the file's "post_processor" (null: none).
SpecialTokenFrame read_post_processor(const TokenizerFile& file, const nlohmann::json& part);

}  // namespace lb
