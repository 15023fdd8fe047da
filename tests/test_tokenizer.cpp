// The byte-level BPE tokenizer: ids equal to HF tokenizers' on ../shared's GSM8K tokenizer (and on
// tests/fixtures/tokenizers/gsm8k-hf-2k once make_tokenizer_fixtures.py has made it), ids worked
// out by hand on the tiny fixture, round trips through decode, and every file it must refuse.
#include "datasets/tokenizer.h"
#include "harness/runtime/errors.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#ifdef LB_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
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

// The harness tokenizes GSM8K; a cold tokenizer must get through the 1319 test questions fast.
TEST_F(TokenizerShared, EncodesGsm8kTestQuickly) {
  if (!is_regular_file(kGsm8kTest)) GTEST_SKIP() << kGsm8kTest << " is absent";
  std::vector<std::string> questions;
  std::ifstream in(kGsm8kTest);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) questions.push_back(json::parse(line).at("question"));
  }
  ASSERT_EQ(questions.size(), 1319u);
  const Tokenizer cold = Tokenizer::from_file(join_path(kSharedTokenizer, "tokenizer.json"));
  const auto start = std::chrono::steady_clock::now();
  std::vector<Ids> encoded;
  size_t tokens = 0;
  for (const std::string& q : questions) {
    encoded.push_back(cold.encode(q));
    tokens += encoded.back().size();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ timing   ] " << questions.size() << " GSM8K test questions, " << tokens << " tokens in "
            << seconds * 1e3 << " ms\n";
  EXPECT_LT(seconds, 1.0);
  for (size_t i = 0; i < questions.size(); ++i) EXPECT_EQ(cold.decode(encoded[i]), nfc(questions[i])) << i;
}

// ---- gsm8k-hf-2k: made by tests/fixtures/make_tokenizer_fixtures.py with HF tokenizers ----

TEST(TokenizerHfFixture, IdsEqualHf) {
  const std::string encodings = join_path(kHfFixture, "encodings.json");
  if (!is_regular_file(encodings))
    GTEST_SKIP() << encodings << " is absent: run `tests/fixtures/make_tokenizer_fixtures.py gsm8k` where HF "
                 << "tokenizers is installed";
  const Tokenizer tok = Tokenizer::from_file(join_path(kHfFixture, "tokenizer.json"));
  const json file = read_json(encodings);
  int wrong = 0;
  for (const json& ex : file.at("examples")) {
    const std::string text = ex.at("text");
    const Ids ids = ex.at("ids");
    const Ids ours = tok.encode(text);
    EXPECT_EQ(ours, ids) << "text: " << json(text).dump();
    EXPECT_EQ(tok.decode(ids), ex.at("decoded").get<std::string>()) << "text: " << json(text).dump();
    wrong += ours != ids;
  }
  EXPECT_EQ(wrong, 0) << "of " << file.at("examples").size() << " examples (" << file.value("made_with", "") << ")";
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
  EXPECT_EQ(tok.encode("hi<|endoftext|>there"), (Ids{'h', 'i', 300, 't', 257, 'r', 'e'}));
  EXPECT_EQ(tok.encode("<|im_end|><|endoftext|>"), (Ids{301, 300}));
  EXPECT_EQ(tok.encode("a<x>yb"), (Ids{'a', 303, 'b'}));       // the longest added token at a position
  EXPECT_EQ(tok.encode("<x>z"), (Ids{302, 'z'}));
  EXPECT_EQ(tok.encode("<|endoftext|"), (Ids{'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'}));
  EXPECT_EQ(tok.decode({300, 'a', 303}), "<|endoftext|>a<x>y");
}

TEST_F(TokenizerTiny, VocabularyAndDecode) {
  EXPECT_EQ(tok.vocab_size(), 304);
  EXPECT_EQ(tok.eos_id(), std::optional<int64_t>(300));
  EXPECT_EQ(tok.token_id("\u0120wor"), 262);
  EXPECT_EQ(tok.token_id("<x>y"), 303);
  std::string all_bytes;
  Ids byte_ids;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b), byte_ids.push_back(b);
  EXPECT_EQ(tok.decode(byte_ids), all_bytes);
  EXPECT_EQ(tok.decode({258, 'o', 262, 'l', 'd', 267}), "hello world  ");
  expect_input_error([&] { tok.decode({280}); }, {"280", kTiny});  // a gap between ids
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
  EXPECT_EQ(with_nfc.encode("e\xcc\x81<x>y"), (Ids{268, 303}));

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
  expect_refused([](json& f) { f["normalizer"] = {{"type", "NFKC"}}; }, {"unsupported normalizer type NFKC"});
  expect_refused([](json& f) { f["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}}; },
                 {"unsupported pre_tokenizer type ByteLevel"});
  expect_refused([](json& f) { f["pre_tokenizer"] = nullptr; }, {"pre_tokenizer is null"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
                 {"behavior \"Removed\""});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", " "}}; },
                 {"String patterns"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; }, {"invert"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
                 {"does not compile", "(unclosed"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true; }, {"use_regex"});
  expect_refused([](json& f) { f["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
                 {"add_prefix_space"});
  expect_refused([](json& f) { f["decoder"] = {{"type", "WordPiece"}}; }, {"unsupported decoder type WordPiece"});
  expect_refused([](json& f) { f["post_processor"] = {{"type", "TemplateProcessing"}}; },
                 {"unsupported post_processor type TemplateProcessing"});
  expect_refused([](json& f) { f["truncation"] = {{"max_length", 8}}; }, {"truncation"});
  expect_refused([](json& f) { f["added_tokens"][1]["lstrip"] = true; }, {"added_tokens[1]", "lstrip"});
  expect_refused([](json& f) { f["added_tokens"][0]["normalized"] = true; }, {"added_tokens[0]", "normalized"});
}

#else  // no ICU

TEST(TokenizerNoIcu, LoadingSaysSo) {
  expect_input_error([] { Tokenizer::from_file(kTiny); }, {kTiny, "ICU"});
  GTEST_SKIP() << "built without ICU (install libicu-dev): the tokenizer's own tests are skipped";
}

#endif

}  // namespace
}  // namespace lb
