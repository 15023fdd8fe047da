// The byte-level BPE tokenizer: ids equal to HF tokenizers' (0.23) on fixtures HF made (the real
// Qwen3, DeepSeek-V3 and GSM8K tokenizers of ../shared on every GSM8K test question and tricky
// strings; variants of a small tokenizer with every supported pipeline part), ids worked out by
// hand on the tiny fixture, round trips through decode, speed on GSM8K, and every file it must refuse.
#include "datasets/shared_files.h"
#include "datasets/tokenizer.h"
#include "datasets/utf8.h"
#include "harness/runtime/errors.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#ifdef LB_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

namespace lb {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int64_t>;

const std::string kTiny = join_path(LB_FIXTURE_DIR, "tokenizers/tiny-bpe/tokenizer.json");

void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no InputError; expected one saying: " << testing::PrintToString(needles);
  } catch (const InputError& e) {
    for (const std::string& needle : needles) EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nlacks: " << needle;
  }
}

#ifdef LB_HAVE_ICU

const std::string kSharedTokenizer = join_path(LB_SHARED_DIR, "tokenizers/gsm8k-bpe-4k");
const std::string kGsm8kTest = join_path(LB_SHARED_DIR, "datasets/gsm8k/test.jsonl");
const std::string kHfFixture = join_path(LB_FIXTURE_DIR, "tokenizers/gsm8k-hf-2k");

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// The oracle for round trips: the tokenizer normalizes to NFC, so decode gives the NFC text.
std::string nfc(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = icu::Normalizer2::getNFCInstance(status);
  std::string out;
  form->normalize(icu::UnicodeString::fromUTF8(text), status).toUTF8String(out);
  EXPECT_TRUE(U_SUCCESS(status));
  return out;
}

// Strings where a reimplementation most easily parts from HF.
const std::vector<std::string> kTricky = {
    "", " ", "  ", "\n", "a\n\n\nb", "   \n  x", "trailing   ", "x   \t  \n\n  y", "\r\r\n\n\r",
    "tab\tand\nnewline\r\n", "It's 12,345.67 dollars!", "don't I'll we've THEY'RE YOU'LL she'S", "'s's 's",
    "1234567890 ١٢٣ ½ Ⅻ", "caf\u00e9 cafe\u0301", "\u00c5ngstr\u00f6m A\u030angstro\u0308m", "\u1e9b\u0323 Ω K Å",
    "日本語のテキスト 中文 한국어", "emoji 😀👍🏽 👨‍👩‍👧 🇯🇵", "Ｆｕｌｌｗｉｄｔｈ", "zero\u200bwidth", "a\vb a\v\vb",
    "a\u0085b a\u0085\u0085b", "nb\u00a0sp\u00a0\u00a0x", "ideo\u3000space\u3000\u3000", "line\u2028sep\u2029para",
    "$<<9*2=18>>18\n#### 18", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "a<|endoftext|>b<|endoftext|><|endoftext|>", "<|im_end", "<|im_end|", "<<|im_end|>>", "ſ 'ſ 'K",
};

// ---- ../shared/tokenizers/gsm8k-bpe-4k, made by HF tokenizers ----

class TokenizerShared : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (is_directory(kSharedTokenizer)) tok = new Tokenizer(Tokenizer::from_file(join_path(kSharedTokenizer, "tokenizer.json")));
  }
  static void TearDownTestSuite() {
    delete tok;
    tok = nullptr;
  }
  void SetUp() override {
    if (!tok) GTEST_SKIP() << kSharedTokenizer << " is absent (../shared is not beside the repo)";
  }
  static Tokenizer* tok;
};
Tokenizer* TokenizerShared::tok = nullptr;

TEST_F(TokenizerShared, IdsEqualHfExamples) {
  const json examples = read_json(join_path(kSharedTokenizer, "examples.json"));
  ASSERT_GT(examples.size(), 0u);
  for (const json& ex : examples) {
    const std::string text = ex.at("text");
    const Ids ids = ex.at("ids");
    EXPECT_EQ(tok->encode(text), ids) << "text: " << json(text).dump();
    EXPECT_EQ(tok->decode(ids), nfc(text)) << "text: " << json(text).dump();
  }
}

TEST_F(TokenizerShared, RoundTripsToNfc) {
  for (const std::string& text : kTricky) EXPECT_EQ(tok->decode(tok->encode(text)), nfc(text)) << json(text).dump();
  // NFD in, NFC out, written out by hand rather than through ICU.
  EXPECT_EQ(tok->decode(tok->encode("cafe\u0301 A\u030a")), "caf\u00e9 \u00c5");
  EXPECT_EQ(tok->encode("cafe\u0301"), tok->encode("caf\u00e9"));
  // Already NFC: unchanged, byte for byte.
  for (const std::string text : {"na\u00efve \u00e9t\u00e9", "\u65e5\u672c", "😀", "Ｆｕｌｌ"})
    EXPECT_EQ(tok->decode(tok->encode(text)), text) << json(text).dump();
}

TEST_F(TokenizerShared, SplitsDigitsAndSpecialTokens) {
  // \p{N} takes one digit at a time, so a run of digits is one token per digit.
  Ids digits;
  for (char d : std::string("20240917")) digits.push_back(tok->token_id(std::string(1, d)));
  EXPECT_EQ(tok->encode("20240917"), digits);

  const int64_t im_start = tok->token_id("<|im_start|>"), im_end = tok->token_id("<|im_end|>");
  EXPECT_EQ(tok->encode("<|im_end|><|im_end|>"), (Ids{im_end, im_end}));
  const Ids chat = tok->encode("x<|im_start|>y");
  EXPECT_EQ(chat, (Ids{tok->token_id("x"), im_start, tok->token_id("y")}));
  for (const std::string partial : {"<|im_end", "<|im_end|", "<| im_end|>"}) {
    for (int64_t id : tok->encode(partial)) EXPECT_LT(id, 4096) << partial;
  }
  EXPECT_EQ(tok->decode({im_start}), "<|im_start|>");
}

TEST_F(TokenizerShared, VocabularyAndEos) {
  EXPECT_EQ(tok->vocab_size(), 4099);
  EXPECT_EQ(tok->eos_id(), std::optional<int64_t>(4096));
  EXPECT_EQ(tok->token_id("<|im_start|>"), 4097);
  EXPECT_EQ(tok->token_id("!"), 0);
  EXPECT_FALSE(tok->find_token("no such token").has_value());
  expect_input_error([&] { tok->token_id("no such token"); }, {"no such token", "tokenizer.json"});
  expect_input_error([&] { tok->decode({4099}); }, {"4099"});
  expect_input_error([&] { tok->decode({-1}); }, {"-1"});
  expect_input_error([&] { tok->encode("ok \xff\xfe"); }, {"UTF-8", "byte 3"});
  expect_input_error([&] { tok->encode("\xed\xa0\x80"); }, {"UTF-8"});  // a surrogate
}

TEST_F(TokenizerShared, EncodesFromManyThreads) {
  const Ids expected = tok->encode(kTricky[13]);
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) wrong[t] += tok->encode(kTricky[13]) != expected;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, std::vector<int>(4, 0));
}

// ---- ids HF tokenizers gave, in fixtures it made (tests/fixtures/make_hf_tokenizer_fixtures.sh) ----

// decode's bytes as HF shows them: each ill-formed stretch becomes one U+FFFD (Rust's from_utf8_lossy).
std::string as_hf_shows(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    char32_t cp = 0;
    if (const size_t n = next_code_point(bytes, i, &cp)) {
      out.append(bytes, i, n);
      i += n;
      continue;
    }
    out += "\xef\xbf\xbd";
    const auto lead = static_cast<unsigned char>(bytes[i++]);
    int continuations = lead >= 0xF0 && lead <= 0xF4 ? 3 : lead >= 0xE0 && lead <= 0xEF ? 2
                        : lead >= 0xC2 && lead <= 0xDF ? 1 : 0;
    while (continuations-- > 0 && i < bytes.size() && (static_cast<unsigned char>(bytes[i]) & 0xC0) == 0x80) ++i;
  }
  return out;
}

// Every example of a fixture: the ids without and with the post-processor's special tokens, and
// decode(ids) against HF's decode (the text itself where HF round-trips it).
void expect_ids_equal_hf(const Tokenizer& tok, const json& fixture) {
  const json& examples = fixture.at("examples");
  int wrong = 0;
  for (const json& ex : examples) {
    const std::string text = ex.at("text");
    const Ids ids = ex.at("ids");
    const Ids with_special = ex.value("ids_with_special", ids);
    const std::string decoded = ex.value("decoded", text);
    const Ids ours = tok.encode(text), ours_with_special = tok.encode(text, Tokenizer::SpecialTokens::Add);
    const std::string our_decoded = as_hf_shows(tok.decode(ids));
    if (ours == ids && ours_with_special == with_special && our_decoded == decoded) continue;
    if (++wrong <= 5)  // a systematic fault would bury the log
      ADD_FAILURE() << "text " << json(text).dump() << "\n  HF ids   " << json(ids).dump() << "\n  ours     "
                    << json(ours).dump() << "\n  HF with special tokens " << json(with_special).dump()
                    << "\n  ours                   " << json(ours_with_special).dump() << "\n  HF decode "
                    << json(decoded).dump() << "\n  ours      " << json(our_decoded).dump();
  }
  EXPECT_EQ(wrong, 0) << "examples differ, of " << examples.size() << " (" << fixture.value("made_with", "") << ")";
}

json read_fixture(const std::string& path) {
  if (!is_regular_file(path)) {
    ADD_FAILURE() << path << " is missing; tests/fixtures/make_hf_tokenizer_fixtures.sh makes it";
    return json::object({{"examples", json::array()}});
  }
  return read_json(path);
}

// The real tokenizers of ../shared: Qwen3's (the Qwen3 presets' default), DeepSeek-V3's (the
// DeepSeek presets' default) and the GSM8K one.
struct RealTokenizer {
  std::string name;
  int64_t vocab_size, eos;
};

class TokenizerReal : public testing::TestWithParam<RealTokenizer> {
 protected:
  void SetUp() override {
    if (!is_regular_file(path)) GTEST_SKIP() << path << " is absent (../shared is not beside the repo)";
  }
  const std::string path = join_path(LB_SHARED_DIR, "tokenizers/" + GetParam().name + "/tokenizer.json");
};

TEST_P(TokenizerReal, IdsEqualHf) {
  const json fixture = read_fixture(join_path(LB_FIXTURE_DIR, "tokenizers/hf-ids/" + GetParam().name + ".json"));
  EXPECT_GE(fixture.at("examples").size(), 1319u) << "every GSM8K test question, and more";
  const Tokenizer tok = Tokenizer::from_file(path);
  expect_ids_equal_hf(tok, fixture);
  EXPECT_EQ(tok.vocab_size(), GetParam().vocab_size);
  EXPECT_EQ(tok.eos_id(), std::optional<int64_t>(GetParam().eos));
}

// The harness loads the tokenizer once per run and tokenizes every prompt: both must be quick.
// Timed in CPU time, so that a busy machine does not fail it; the bound is the issue's, generous.
TEST_P(TokenizerReal, EncodesGsm8kTestQuickly) {
  if (!is_regular_file(kGsm8kTest)) GTEST_SKIP() << kGsm8kTest << " is absent";
  std::vector<std::string> questions;
  std::ifstream in(kGsm8kTest);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) questions.push_back(json::parse(line).at("question"));
  }
  ASSERT_EQ(questions.size(), 1319u);
  const auto cpu_seconds = [] { return double(std::clock()) / CLOCKS_PER_SEC; };
  const double load_start = cpu_seconds();
  const auto load_wall = std::chrono::steady_clock::now();
  const Tokenizer cold = Tokenizer::from_file(path);
  const double load = cpu_seconds() - load_start;
  const double load_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_wall).count();
  const double start = cpu_seconds();
  std::vector<Ids> encoded;
  size_t tokens = 0;
  for (const std::string& q : questions) {
    encoded.push_back(cold.encode(q));
    tokens += encoded.back().size();
  }
  const double seconds = cpu_seconds() - start;
  std::cout << "[ timing   ] " << GetParam().name << ": loaded in " << load * 1e3 << " ms CPU (" << load_wall_s * 1e3
            << " ms wall); " << questions.size() << " GSM8K test questions, " << tokens << " tokens in "
            << seconds * 1e3 << " ms CPU\n";
  EXPECT_LT(seconds, 1.0);
  for (size_t i = 0; i < questions.size(); ++i) EXPECT_EQ(cold.decode(encoded[i]), nfc(questions[i])) << i;
}

INSTANTIATE_TEST_SUITE_P(Shared, TokenizerReal,
                         testing::Values(RealTokenizer{"qwen3", 151669, 151643},
                                         RealTokenizer{"deepseek-v3", 128815, 1},
                                         RealTokenizer{"gsm8k-bpe-4k", 4099, 4096}),
                         [](const testing::TestParamInfo<RealTokenizer>& info) {
                           return test::param_name(info.index, info.param.name);
                         });

// Variants of gsm8k-hf-2k that HF wrote with the parts the real files leave out: GPT-2's own
// ByteLevel regex and prefix space, NFKC, Roberta's cls/sep, lstrip/rstrip tokens ("gpt2-roberta");
// every Split behavior, String patterns, invert, Digits runs, NFD/NFKD in a Sequence, a Sequence
// post-processor ("split-behaviors"); single digits, single_word and normalized tokens, a BOS
// template ("digits-bos").
class TokenizerHfVariant : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerHfVariant, IdsEqualHf) {
  const std::string dir = join_path(LB_FIXTURE_DIR, "tokenizers/hf-variants/" + GetParam());
  const json fixture = read_fixture(join_path(dir, "ids.json"));
  ASSERT_GT(fixture.at("examples").size(), 0u);
  expect_ids_equal_hf(Tokenizer::from_file(join_path(dir, "tokenizer.json")), fixture);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerHfVariant, testing::Values("gpt2-roberta", "split-behaviors", "digits-bos"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return test::param_name(info.index, info.param);
                         });

// A Qwen2-style BPE that HF trained on GSM8K (tests/fixtures/make_tokenizer_fixtures.py gsm8k).
TEST(TokenizerHfFixture, IdsEqualHf) {
  const json fixture = read_fixture(join_path(kHfFixture, "encodings.json"));
  ASSERT_GT(fixture.at("examples").size(), 0u);
  expect_ids_equal_hf(Tokenizer::from_file(join_path(kHfFixture, "tokenizer.json")), fixture);
}

// ---- tiny-bpe: hand-designed; a byte's id is the byte, merges as "a b" strings ----

class TokenizerTiny : public testing::Test {
 protected:
  // The fixture with `edit` applied, written to a temp file and loaded.
  Tokenizer variant(const std::function<void(json&)>& edit) {
    json file = read_json(kTiny);
    edit(file);
    const std::string path = dir / ("variant" + std::to_string(variants++) + ".json");
    write_text(path, file.dump());
    return Tokenizer::from_file(path);
  }
  Tokenizer tok = Tokenizer::from_file(kTiny);
  test::TempDir dir;
  int variants = 0;
};

TEST_F(TokenizerTiny, MergesByRank) {
  EXPECT_EQ(tok.encode("hello"), (Ids{258, 'o'}));             // l+l, h+e, he+ll
  EXPECT_EQ(tok.encode("ell"), (Ids{'e', 256}));               // l+l (rank 0) beats e+l (rank 3)
  EXPECT_EQ(tok.encode("elo"), (Ids{259, 'o'}));
  EXPECT_EQ(tok.encode(" world"), (Ids{262, 'l', 'd'}));       // Ġ+w, o+r, Ġw+or
  EXPECT_EQ(tok.encode("hello world"), (Ids{258, 'o', 262, 'l', 'd'}));
  EXPECT_EQ(tok.encode("aaa"), (Ids{263, 'a'}));               // the leftmost pair first
  EXPECT_EQ(tok.encode("aaaaa"), (Ids{264, 'a'}));
  EXPECT_EQ(tok.encode("world"), (Ids{'w', 261, 'l', 'd'}));   // "world" is in the vocab, no merge makes it
  EXPECT_EQ(tok.encode("\xc3\xa9"), (Ids{268}));               // é, its two bytes merged
}

TEST_F(TokenizerTiny, SplitsLikeQwen) {
  EXPECT_EQ(tok.encode("It's"), (Ids{'I', 't', 265}));
  EXPECT_EQ(tok.encode("IT'S"), (Ids{'I', 'T', 269}));         // (?i:'s) keeps 'S one word
  EXPECT_EQ(tok.encode("12"), (Ids{'1', '2'}));                // digits one by one: the 1+2 merge never applies
  EXPECT_EQ(tok.encode("a  b"), (Ids{'a', ' ', ' ', 'b'}));    // \s+(?!\S) leaves the last space to " b"
  EXPECT_EQ(tok.encode("a   "), (Ids{'a', 267, ' '}));         // a trailing run is one word
  EXPECT_EQ(tok.encode("a\n\nb"), (Ids{'a', '\n', '\n', 'b'}));
  EXPECT_EQ(tok.encode("a\r\nb"), (Ids{'a', '\r', '\n', 'b'}));
  // \s is Unicode White_Space, as in HF's Oniguruma: two vertical tabs are two words, so never
  // merged. Were U+000B not \s, " ?[^\s\p{L}\p{N}]+" would take both as one word, giving 270.
  EXPECT_EQ(tok.encode("a\v\vb"), (Ids{'a', '\v', '\v', 'b'}));
  EXPECT_EQ(tok.encode("😀"), (Ids{0xF0, 0x9F, 0x98, 0x80}));
  // No normalizer in this file: NFD stays NFD.
  EXPECT_EQ(tok.encode("e\xcc\x81"), (Ids{'e', 0xCC, 0x81}));
  EXPECT_EQ(tok.decode(tok.encode("e\xcc\x81")), "e\xcc\x81");
}

TEST_F(TokenizerTiny, AddedTokensFirst) {
  EXPECT_EQ(tok.encode("hi<|endoftext|>there"), (Ids{'h', 'i', 272, 't', 257, 'r', 'e'}));
  EXPECT_EQ(tok.encode("<|im_end|><|endoftext|>"), (Ids{273, 272}));
  EXPECT_EQ(tok.encode("a<x>yb"), (Ids{'a', 275, 'b'}));       // the longest added token at a position
  EXPECT_EQ(tok.encode("<x>z"), (Ids{274, 'z'}));
  EXPECT_EQ(tok.encode("<|endoftext|"), (Ids{'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'}));
  EXPECT_EQ(tok.decode({272, 'a', 275}), "<|endoftext|>a<x>y");
}

TEST_F(TokenizerTiny, VocabularyAndDecode) {
  EXPECT_EQ(tok.vocab_size(), 276);  // added tokens take the ids after the vocabulary's 272
  EXPECT_EQ(tok.eos_id(), std::optional<int64_t>(272));
  EXPECT_EQ(tok.token_id("\u0120wor"), 262);
  EXPECT_EQ(tok.token_id("<x>y"), 275);
  std::string all_bytes;
  Ids byte_ids;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b), byte_ids.push_back(b);
  EXPECT_EQ(tok.decode(byte_ids), all_bytes);
  EXPECT_EQ(tok.decode({258, 'o', 262, 'l', 'd', 267}), "hello world  ");
  expect_input_error([&] { tok.decode({276}); }, {"276", kTiny});
}

TEST_F(TokenizerTiny, MergesAsPairsGiveTheSameIds) {
  const Tokenizer pairs = variant([](json& f) {
    json merges = json::array();
    for (const json& m : f["model"]["merges"]) {
      const std::string s = m;
      merges.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    f["model"]["merges"] = merges;
  });
  for (const std::string text : {"hello world", "ell", "aaaaa", "IT'S a   ", "\xc3\xa9<x>y"})
    EXPECT_EQ(pairs.encode(text), tok.encode(text)) << text;
}

TEST_F(TokenizerTiny, NfcAndIgnoreMerges) {
  const Tokenizer with_nfc = variant([](json& f) { f["normalizer"] = {{"type", "NFC"}}; });
  EXPECT_EQ(with_nfc.encode("e\xcc\x81"), (Ids{268}));
  EXPECT_EQ(with_nfc.decode(with_nfc.encode("e\xcc\x81")), "\xc3\xa9");
  // Added tokens match on the raw text, before NFC.
  EXPECT_EQ(with_nfc.encode("e\xcc\x81<x>y"), (Ids{268, 275}));

  const Tokenizer whole = variant([](json& f) { f["model"]["ignore_merges"] = true; });
  EXPECT_EQ(whole.encode("world"), (Ids{271}));
  EXPECT_EQ(whole.encode("hello"), (Ids{258, 'o'}));  // not a token: merged as before

  // These only act on characters missing from the vocabulary; a byte-level one has none.
  const Tokenizer fallback = variant([](json& f) {
    f["model"]["byte_fallback"] = true;
    f["model"]["unk_token"] = "<unk>";
  });
  EXPECT_EQ(fallback.encode("hello world"), tok.encode("hello world"));
}

// A pre_tokenizer of one step before the ByteLevel mapping.
json one_step(const json& step) {
  return {{"type", "Sequence"},
          {"pretokenizers", {step, {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
}

json split_step(const json& pattern, const char* behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

// Pieces are merged within, never across: which merges happen shows where a split cut.
TEST_F(TokenizerTiny, SplitBehaviors) {
  auto split_by = [&](const json& pattern, const char* behavior, bool invert = false) {
    return variant([&](json& f) { f["pre_tokenizer"] = one_step(split_step(pattern, behavior, invert)); });
  };
  const json e = {{"String", "e"}};
  EXPECT_EQ(split_by(e, "Isolated").encode("hel"), (Ids{'h', 'e', 'l'}));        // h | e | l
  EXPECT_EQ(split_by(e, "MergedWithPrevious").encode("hel"), (Ids{257, 'l'}));   // he | l
  EXPECT_EQ(split_by(e, "MergedWithNext").encode("hel"), (Ids{'h', 259}));       // h | el
  EXPECT_EQ(split_by(e, "Removed").encode("hel"), (Ids{'h', 'l'}));              // h | l
  EXPECT_EQ(split_by(e, "Removed", true).encode("hel"), (Ids{'e'}));             // inverted: all but e goes
  const json space = {{"Regex", "\\s"}};
  EXPECT_EQ(split_by(space, "Isolated").encode("a  b"), (Ids{'a', ' ', ' ', 'b'}));
  EXPECT_EQ(split_by(space, "Contiguous").encode("a  b"), (Ids{'a', 267, 'b'}));  // adjacent matches join: ĠĠ
  // With no split at all, "hel" is one word: h+e outranks e+l.
  const json nothing = {{"type", "Sequence"}, {"pretokenizers", json::array()}};
  EXPECT_EQ(variant([&](json& f) { f["pre_tokenizer"] = one_step(nothing); }).encode("hel"), (Ids{257, 'l'}));
}

TEST_F(TokenizerTiny, DigitsAndGpt2ByteLevel) {
  auto digits = [&](bool individual) {
    const json step = {{"type", "Digits"}, {"individual_digits", individual}};
    return variant([&](json& f) { f["pre_tokenizer"] = one_step(step); });
  };
  EXPECT_EQ(digits(false).encode("a12"), (Ids{'a', 266}));  // a | 12, and 1+2 merges
  EXPECT_EQ(digits(true).encode("a12"), (Ids{'a', '1', '2'}));
  // ByteLevel alone: a space before each piece lacking one, then GPT-2's regex.
  const Tokenizer gpt2 = variant([](json& f) {
    f["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  });
  EXPECT_EQ(gpt2.encode("hello world"), (Ids{' ', 258, 'o', 262, 'l', 'd'}));  // " hello" " world"
  EXPECT_EQ(gpt2.encode(" world"), (Ids{262, 'l', 'd'}));
  EXPECT_EQ(gpt2.encode("a<x>world"), (Ids{' ', 'a', 274, 262, 'l', 'd'}));    // each stretch gets its space
}

TEST_F(TokenizerTiny, AddedTokenRules) {
  const Tokenizer t = variant([](json& f) {
    f["added_tokens"].push_back({{"id", 276}, {"content", "[L]"}, {"lstrip", true}});
    f["added_tokens"].push_back({{"id", 277}, {"content", "[R]"}, {"rstrip", true}});
    f["added_tokens"].push_back({{"id", 278}, {"content", "ab"}, {"single_word", true}});
  });
  EXPECT_EQ(t.encode("x  [L]y"), (Ids{'x', 276, 'y'}));  // the spaces go into the token
  EXPECT_EQ(t.encode("x[R]  y"), (Ids{'x', 277, 'y'}));
  EXPECT_EQ(t.encode("[R]  [L]"), (Ids{277, 276}));      // spaces [R] took are not [L]'s to take again
  // "ab" only where no word character touches it: not in "cab", not before '_'.
  EXPECT_EQ(t.encode("ab cab ab_ ab"), (Ids{278, ' ', 'c', 'a', 'b', ' ', 'a', 'b', '_', ' ', 278}));
}

TEST_F(TokenizerTiny, NormalizedAddedTokens) {
  const Tokenizer t = variant([](json& f) {
    f["normalizer"] = {{"type", "NFC"}};
    f["added_tokens"].push_back({{"id", 276}, {"content", "e\u0301x"}, {"normalized", true}});
    f["added_tokens"].push_back({{"id", 277}, {"content", "abc"}, {"normalized", false}});
    f["added_tokens"].push_back({{"id", 278}, {"content", "xab"}, {"normalized", true}});
  });
  EXPECT_EQ(t.encode("\u00e9x"), (Ids{276}));   // matched after NFC, as its NFC form
  EXPECT_EQ(t.encode("e\u0301x"), (Ids{276}));
  // Decoded from that form too, as HF does: its é (U+00E9) is GPT-2's symbol for the byte 0xE9,
  // which HF's decode then shows as U+FFFD.
  EXPECT_EQ(t.decode({276}), "\xe9x");
  EXPECT_EQ(t.encode("xabc"), (Ids{'x', 277}));  // raw-text tokens are cut out first
  EXPECT_EQ(t.encode("xab"), (Ids{278}));
}

TEST_F(TokenizerTiny, SpecialTokensOnRequest) {
  const json template_bos = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<x>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", json::array()},
      {"special_tokens", {{"<x>", {{"id", "<x>"}, {"ids", {274}}, {"tokens", {"<x>"}}}}}}};
  const json roberta = {{"type", "RobertaProcessing"}, {"sep", {"<|im_end|>", 273}}, {"cls", {"<|endoftext|>", 272}}};
  const Tokenizer bos = variant([&](json& f) { f["post_processor"] = template_bos; });
  EXPECT_EQ(bos.encode("a"), (Ids{'a'}));
  EXPECT_EQ(bos.encode("a", Tokenizer::SpecialTokens::Add), (Ids{274, 'a'}));
  const Tokenizer cls_sep = variant([&](json& f) { f["post_processor"] = roberta; });
  EXPECT_EQ(cls_sep.encode("a", Tokenizer::SpecialTokens::Add), (Ids{272, 'a', 273}));
  // A Sequence: each processor wraps what the ones before it made.
  const Tokenizer both = variant([&](json& f) {
    f["post_processor"] = {{"type", "Sequence"}, {"processors", {template_bos, roberta}}};
  });
  EXPECT_EQ(both.encode("a", Tokenizer::SpecialTokens::Add), (Ids{272, 274, 'a', 273}));
  EXPECT_EQ(tok.encode("a", Tokenizer::SpecialTokens::Add), (Ids{'a'}));  // ByteLevel adds none
}

// ---- what it refuses ----

class TokenizerErrors : public TokenizerTiny {
 protected:
  void expect_refused(const std::function<void(json&)>& edit, const std::vector<std::string>& needles) {
    const std::string path = dir / ("variant" + std::to_string(variants) + ".json");
    std::vector<std::string> with_path = needles;
    with_path.push_back(path);
    expect_input_error([&] { variant(edit); }, with_path);
  }
};

TEST_F(TokenizerErrors, MissingOrMalformedFile) {
  expect_input_error([] { Tokenizer::from_file("/nonexistent/tokenizer.json"); },
                     {"/nonexistent/tokenizer.json", "no such"});
  const std::string bad = dir / "bad.json";
  write_text(bad, "{\"model\": {\"type\": \"BPE\", ");
  expect_input_error([&] { Tokenizer::from_file(bad); }, {bad, "not valid JSON"});
  write_text(bad, "[1, 2]");
  expect_input_error([&] { Tokenizer::from_file(bad); }, {bad, "not a tokenizer.json"});
}

TEST_F(TokenizerErrors, OtherModels) {
  const std::string wordpiece = dir / "wordpiece.json";
  write_text(wordpiece, R"({"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}})");
  expect_input_error([&] { Tokenizer::from_file(wordpiece); }, {wordpiece, "unsupported model type WordPiece"});
  expect_refused([](json& f) { f["model"]["dropout"] = 0.1; }, {"model.dropout"});
  expect_refused([](json& f) { f["model"]["continuing_subword_prefix"] = "##"; }, {"continuing_subword_prefix"});
}

TEST_F(TokenizerErrors, MissingKeys) {
  expect_refused([](json& f) { f.erase("model"); }, {"missing key model"});
  expect_refused([](json& f) { f["model"].erase("type"); }, {"missing key model.type"});
  expect_refused([](json& f) { f["model"].erase("vocab"); }, {"missing key model.vocab"});
  expect_refused([](json& f) { f["model"].erase("merges"); }, {"missing key model.merges"});
  expect_refused([](json& f) { f["added_tokens"][0].erase("content"); }, {"missing key added_tokens[0].content"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0].erase("pattern"); },
                 {"missing key pre_tokenizer.pretokenizers[0].pattern"});
}

TEST_F(TokenizerErrors, BadVocabOrMerges) {
  expect_refused([](json& f) { f["model"]["merges"].push_back("x yz"); }, {"model.merges[15]", "\"yz\" is not in model.vocab"});
  expect_refused([](json& f) { f["model"]["merges"].push_back("a b c"); }, {"model.merges[15]", "one space"});
  expect_refused([](json& f) { f["model"]["merges"].push_back(json::array({"a"})); }, {"model.merges[15]"});
  expect_refused([](json& f) { f["model"]["merges"].push_back("l l"); }, {"model.merges[15]", "repeats model.merges[0]"});
  expect_refused([](json& f) { f["model"]["vocab"].erase("\u0100"); }, {"byte-level symbol", "byte 0"});
  expect_refused([](json& f) { f["model"]["vocab"]["x"] = "seven"; }, {"model.vocab[\"x\"]"});
}

TEST_F(TokenizerErrors, UnsupportedPipelineParts) {
  expect_refused([](json& f) { f["normalizer"] = {{"type", "Lowercase"}}; }, {"unsupported normalizer type Lowercase"});
  expect_refused(
      [](json& f) {
        f["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Strip"}}}}};
      },
      {"unsupported normalizer.normalizers[1] type Strip"});
  expect_refused([](json& f) { f["pre_tokenizer"] = {{"type", "Metaspace"}}; },
                 {"unsupported pre_tokenizer type Metaspace"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Whitespace"}}; },
                 {"unsupported pre_tokenizer.pretokenizers[0] type Whitespace"});
  expect_refused([](json& f) { f["pre_tokenizer"] = nullptr; }, {"pre_tokenizer is null"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"].erase(1); }, {"no ByteLevel step"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"].push_back({{"type", "Digits"}}); },
                 {"pre_tokenizer.pretokenizers[2] (Digits) comes after the ByteLevel step"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
                 {"pre_tokenizer.pretokenizers[0].behavior \"Sideways\""});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}}; },
                 {"pre_tokenizer.pretokenizers[0].pattern must be"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", ""}}; },
                 {"pre_tokenizer.pretokenizers[0].pattern.String is empty"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
                 {"pre_tokenizer.pretokenizers[0].pattern.Regex", "does not compile", "(unclosed"});
  expect_refused([](json& f) { f["decoder"] = {{"type", "WordPiece"}}; }, {"unsupported decoder type WordPiece"});
  expect_refused([](json& f) { f["post_processor"] = {{"type", "Splice"}}; },
                 {"unsupported post_processor type Splice"});
  auto template_of = [](const json& single) {
    return [single](json& f) {
      f["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", json::object()}};
    };
  };
  const json a = {{"Sequence", {{"id", "A"}}}}, b = {{"Sequence", {{"id", "B"}}}};
  const json s = {{"SpecialToken", {{"id", "<s>"}}}};
  expect_refused(template_of(json::array({a, b})), {"post_processor.single[1].Sequence.id \"B\""});
  expect_refused(template_of(json::array({s, a})), {"missing key post_processor.special_tokens[\"<s>\"]"});
  expect_refused([](json& f) { f["truncation"] = {{"max_length", 8}}; }, {"truncation"});
  expect_refused([](json& f) { f["added_tokens"][0]["lstrip"] = "yes"; },
                 {"added_tokens[0] (\"<|endoftext|>\").lstrip must be true or false"});
  // HF would give it id 273 (the next after the vocabulary and <|endoftext|>), whatever the file says.
  expect_refused([](json& f) { f["added_tokens"][1]["id"] = 290; }, {"added_tokens[1]", "id 273"});
}

#else  // no ICU

TEST(TokenizerNoIcu, LoadingSaysSo) {
  expect_input_error([] { Tokenizer::from_file(kTiny); }, {kTiny, "ICU"});
  GTEST_SKIP() << "built without ICU (install libicu-dev): the tokenizer's own tests are skipped";
}

#endif

// ---- the presets' default tokenizers: under ../shared, or LB_SHARED_DIR ----

// Sets (or with nullptr unsets) an environment variable for one scope, and puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(PresetTokenizer, SharedDirFollowsTheEnvironment) {
  {
    const ScopedEnv unset("LB_SHARED_DIR", nullptr);
    EXPECT_EQ(shared_dir(), "../shared");
  }
  const ScopedEnv set("LB_SHARED_DIR", "/somewhere/shared");
  EXPECT_EQ(shared_dir(), "/somewhere/shared");
  expect_input_error([] { shared_file("tokenizers/x/tokenizer.json", "for a test"); },
                     {"/somewhere/shared/tokenizers/x/tokenizer.json is missing", "for a test", "LB_SHARED_DIR"});
}

// A preset whose default tokenizer is missing stops before any model work, naming the file and the way out.
TEST(PresetTokenizer, MissingDefaultIsNamed) {
  const ScopedEnv env("LB_SHARED_DIR", "/nonexistent-shared");
  for (const std::string name : {"qwen3", "deepseek-v3"}) {
    const std::string preset = name == "qwen3" ? "qwen3-30b-a3b" : "deepseek-v3";
    const test::CliResult r = test::run_cli({"gsm8k", "--model", preset, "--layout", "none", "--backend", "cpu",
                                             "--ranks", "1", "--data", test::fixture_dir("gsm8k/good.jsonl"),
                                             "--shots", "0"});
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("/nonexistent-shared/tokenizers/" + name + "/tokenizer.json is missing"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--tokenizer"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace lb
