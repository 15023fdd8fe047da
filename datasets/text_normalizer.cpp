#include "datasets/text_normalizer.h"

namespace lb {

TextNormalizer::TextNormalizer(const TokenizerFile& file, const nlohmann::json& part) {
  read(file, part, "normalizer");
}

void TextNormalizer::read(const TokenizerFile& file, const nlohmann::json& part, const std::string& name) {
  if (part.is_null()) return;
  const std::string type = file.type_of(part, name);
  if (type == "NFC") forms_.push_back(unicode::NormalForm::NFC);
  else if (type == "NFD") forms_.push_back(unicode::NormalForm::NFD);
  else if (type == "NFKC") forms_.push_back(unicode::NormalForm::NFKC);
  else if (type == "NFKD") forms_.push_back(unicode::NormalForm::NFKD);
  else if (type == "Sequence") {
    const nlohmann::json& steps = file.member(part, "normalizers", name + ".normalizers");
    if (!steps.is_array()) file.refuse(name + ".normalizers must be an array");
    for (size_t i = 0; i < steps.size(); ++i) read(file, steps[i], name + ".normalizers[" + std::to_string(i) + "]");
  } else {
    file.refuse("unsupported " + name + " type " + type + " (supported: NFC, NFD, NFKC, NFKD, Sequence, none)");
  }
}

std::string TextNormalizer::apply(const std::string& text) const {
  std::string out = text;
  for (unicode::NormalForm form : forms_) out = unicode::normalize(out, form);
  return out;
}

}  // namespace lb
