#include "datasets/post_processor.h"

namespace lb {
namespace {

using json = nlohmann::json;

// A [token, id] pair of Roberta/BertProcessing.
int64_t pair_id(const TokenizerFile& file, const json& part, const char* key, const std::string& name) {
  const json& pair = file.member(part, key, name + "." + key);
  if (!pair.is_array() || pair.size() != 2) file.refuse(name + "." + key + " must be [token, id]");
  return file.id(pair[1], name + "." + key + "[1]");
}

// TemplateProcessing's "single": SpecialToken pieces around the one Sequence A piece, each
// special token standing for the ids listed under "special_tokens".
void read_template(const TokenizerFile& file, const json& part, const std::string& name, SpecialTokenFrame& frame) {
  const json& single = file.member(part, "single", name + ".single");
  if (!single.is_array()) file.refuse(name + ".single must be an array");
  const json& specials = file.member(part, "special_tokens", name + ".special_tokens");
  std::vector<int64_t> before, after;
  bool sequence_seen = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string piece_name = name + ".single[" + std::to_string(i) + "]";
    const json& piece = single[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      const json& id = file.member(piece.at("Sequence"), "id", piece_name + ".Sequence.id");
      if (id != "A") file.refuse(piece_name + ".Sequence.id " + id.dump() + " is not A (a single sequence has only A)");
      if (sequence_seen) file.refuse(piece_name + " repeats the sequence A");
      sequence_seen = true;
    } else if (piece.is_object() && piece.contains("SpecialToken")) {
      const json& id = file.member(piece.at("SpecialToken"), "id", piece_name + ".SpecialToken.id");
      if (!id.is_string()) file.refuse(piece_name + ".SpecialToken.id must be a string");
      const std::string key = id.get<std::string>();
      const std::string special_name = name + ".special_tokens[" + id.dump() + "]";
      const json& ids = file.member(specials, key.c_str(), special_name);
      const json& id_list = file.member(ids, "ids", special_name + ".ids");
      if (!id_list.is_array()) file.refuse(special_name + ".ids must be an array");
      for (size_t k = 0; k < id_list.size(); ++k)
        (sequence_seen ? after : before)
            .push_back(file.id(id_list[k], special_name + ".ids[" + std::to_string(k) + "]"));
    } else {
      file.refuse(piece_name + " must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  if (!sequence_seen) file.refuse(name + ".single has no Sequence A piece");
  frame.before.insert(frame.before.begin(), before.begin(), before.end());
  frame.after.insert(frame.after.end(), after.begin(), after.end());
}

void read(const TokenizerFile& file, const json& part, const std::string& name, SpecialTokenFrame& frame) {
  if (part.is_null()) return;
  const std::string type = file.type_of(part, name);
  if (type == "ByteLevel") return;  // trims offsets, adds nothing
  if (type == "TemplateProcessing") {
    read_template(file, part, name, frame);
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    frame.before.insert(frame.before.begin(), pair_id(file, part, "cls", name));
    frame.after.push_back(pair_id(file, part, "sep", name));
  } else if (type == "Sequence") {  // each one wraps what the ones before it made
    const json& steps = file.member(part, "processors", name + ".processors");
    if (!steps.is_array()) file.refuse(name + ".processors must be an array");
    for (size_t i = 0; i < steps.size(); ++i)
      read(file, steps[i], name + ".processors[" + std::to_string(i) + "]", frame);
  } else {
    file.refuse("unsupported " + name + " type " + type +
                " (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)");
  }
}

}  // namespace

SpecialTokenFrame read_post_processor(const TokenizerFile& file, const json& part) {
  SpecialTokenFrame frame;
  read(file, part, "post_processor", frame);
  return frame;
}

}  // namespace lb
