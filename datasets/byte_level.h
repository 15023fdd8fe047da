#pragma once
// GPT-2's byte-level alphabet: every byte gets a printable character, so that no BPE token holds
// a space or a control character. The printable Latin-1 bytes stand for themselves, the other 68
// (controls, space, DEL, NBSP, soft hyphen) take U+0100, U+0101, ... in byte order (so ' ' is 'Ġ'
// and '\n' is 'Ċ'). Vocabularies and merges are written in this alphabet.
#include <array>
#include <string>

namespace lb {

// The character standing for each byte, as UTF-8.
const std::array<std::string, 256>& byte_symbols();

// The bytes a token written in the alphabet stands for. HF's ByteLevel decoder keeps a token that
// holds a character outside the alphabet ("<|im_end|>" does not, "<｜User｜>" does) as its own
// UTF-8 text; so does this.
std::string token_bytes(const std::string& token);

}  // namespace lb
