// Safetensors reading and writing, FP8 e4m3 coding, and HF checkpoint directories: round trips
// are bit-exact, slices equal torch's narrow, and every defect of a file is an InputError that
// names the file and, where there is one, the tensor.
#include "harness/model/checkpoint.h"
#include "harness/runtime/errors.h"
#include "harness/model/safetensors.h"

#include <ftw.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace lb {
namespace {

// POSIX calls rather than std::filesystem: pip LibTorch 2.x exports its own copies of the
// std::filesystem symbols (pytorch/pytorch#133437) and remove_all bound to them crashes.

// A fresh empty directory under the system temp dir, removed when the test ends.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string name = std::string(tmp && *tmp ? tmp : "/tmp") + "/lb_st_test_XXXXXX";
    if (!::mkdtemp(name.data())) throw std::runtime_error("mkdtemp " + name + ": " + std::strerror(errno));
    path = name;
  }
  ~ScratchDir() {
    auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
    ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Fresh random data every run; the seed is printed with any failure so it can be replayed.
struct FreshSeed {
  uint64_t seed = std::random_device{}();
  testing::ScopedTrace trace{__FILE__, __LINE__, "torch seed " + std::to_string(seed)};
  FreshSeed() { torch::manual_seed(seed); }
};

// Expects `f` to throw InputError whose message contains every needle.
void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  std::string message;
  EXPECT_THROW(
      {
        try {
          f();
        } catch (const InputError& e) {
          message = e.what();
          throw;
        }
      },
      InputError);
  for (const std::string& needle : needles)
    EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' not in: " << message;
}

// A file with exactly these header bytes and data bytes, for crafting defects.
void write_raw(const std::string& path, const std::string& header, const std::string& data, int64_t length = -1) {
  const uint64_t n = length < 0 ? header.size() : uint64_t(length);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), size_t(ac.numel()) * ac.element_size()) == 0;
}

TEST(Safetensors, RoundTripIsBitExact) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "round.safetensors";
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32", torch::randn({5, 7})},
      {"f16", torch::randn({3, 4, 2}).to(torch::kHalf)},
      {"bf16", torch::randn({9}).to(torch::kBFloat16)},
      {"i64", torch::randint(0, 256, {4, 3, 8}, torch::kByte).view(torch::kLong).view({4, 3})},  // any 64 bits
      {"f64", torch::randn({2, 2}, torch::kDouble)},
      {"i32", torch::randint(-1000000, 1000000, {6}, torch::kInt)},
      {"u8", torch::randint(0, 256, {8}, torch::kByte)},
      {"bool", torch::randint(0, 2, {3, 3}).to(torch::kBool)},
      {"scalar", torch::randn({})},
      {"empty", torch::randn({0, 4})},
      {"strided", torch::randn({4, 6}).t()},  // not contiguous: written as its logical values
  };
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "test"}});

  SafetensorsFile file(path);
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "test"}}));
  ASSERT_EQ(file.tensors().size(), tensors.size());
  EXPECT_EQ(file.info("f16").dtype, StDtype::F16);
  EXPECT_EQ(file.info("bf16").dtype, StDtype::BF16);
  EXPECT_EQ(file.info("i64").dtype, StDtype::I64);
  EXPECT_EQ(file.info("u8").dtype, StDtype::U8);
  EXPECT_EQ(file.info("f16").shape, (std::vector<int64_t>{3, 4, 2}));
  EXPECT_EQ(file.info("f16").numel(), 24);
  // Data is written in the order given, back to back.
  EXPECT_EQ(file.info("f32").begin, 0u);
  EXPECT_EQ(file.info("f16").begin, file.info("f32").end);
  for (const auto& [name, t] : tensors) {
    torch::Tensor back = file.read(name, t.scalar_type());
    EXPECT_TRUE(back.is_contiguous()) << name;
    EXPECT_TRUE(bit_equal(back, t)) << name;
  }
}

TEST(Safetensors, ReadConvertsHalfTypesExactly) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "half.safetensors";
  torch::Tensor bf = torch::randn({16, 8}).to(torch::kBFloat16);
  torch::Tensor h = torch::randn({16, 8}).to(torch::kHalf);
  write_safetensors(path, {{"bf", bf}, {"h", h}});
  SafetensorsFile file(path);
  torch::Tensor bf32 = file.read("bf", torch::kFloat);
  EXPECT_EQ(bf32.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(bf32, bf.to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(bf32.to(torch::kBFloat16), bf));  // exact: converts back unchanged
  EXPECT_TRUE(torch::equal(file.read("h", torch::kDouble), h.to(torch::kDouble)));
}

TEST(Safetensors, SlicesEqualNarrow) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "slices.safetensors";
  torch::Tensor m = torch::randn({10, 12});
  torch::Tensor c = torch::randn({4, 5, 6}).to(torch::kBFloat16);
  write_safetensors(path, {{"m", m}, {"c", c}});
  SafetensorsFile file(path);

  std::mt19937 rng(seed.seed);
  for (int trial = 0; trial < 20; ++trial) {
    for (const auto& [name, t] : {std::pair<std::string, torch::Tensor>{"m", m}, {"c", c}}) {
      for (int64_t dim = 0; dim < t.dim(); ++dim) {
        const int64_t size = t.size(dim);
        const int64_t start = std::uniform_int_distribution<int64_t>(0, size)(rng);
        const int64_t length = std::uniform_int_distribution<int64_t>(0, size - start)(rng);
        torch::Tensor part = file.read(name, t.scalar_type(), Slice{dim, start, length});
        EXPECT_TRUE(bit_equal(part, t.narrow(dim, start, length)))
            << name << " dim " << dim << " [" << start << ", " << start + length << ")";
      }
    }
  }
  // The edges, and a slice converted on the way.
  EXPECT_TRUE(torch::equal(file.read("m", torch::kFloat, Slice{1, 11, 1}), m.narrow(1, 11, 1)));
  EXPECT_TRUE(torch::equal(file.read("m", torch::kFloat, Slice{0, 0, 10}), m));
  EXPECT_TRUE(torch::equal(file.read("c", torch::kFloat, Slice{2, 3, 2}), c.narrow(2, 3, 2).to(torch::kFloat)));
}

TEST(Safetensors, MovedFileStaysReadable) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "move.safetensors";
  torch::Tensor t = torch::randn({3, 3});
  write_safetensors(path, {{"t", t}});
  SafetensorsFile a(path);
  SafetensorsFile b(std::move(a));
  EXPECT_TRUE(torch::equal(b.read("t", torch::kFloat), t));
  SafetensorsFile c(path);
  c = std::move(b);
  EXPECT_TRUE(torch::equal(c.read("t", torch::kFloat), t));
}

TEST(Safetensors, RewritingAnOpenFileKeepsItsMappingValid) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "rewrite.safetensors";
  torch::Tensor before = torch::randn({64}), after = torch::randn({8});
  write_safetensors(path, {{"t", before}});
  SafetensorsFile old_file(path);
  write_safetensors(path, {{"t", after}});
  EXPECT_TRUE(torch::equal(old_file.read("t", torch::kFloat), before));
  EXPECT_TRUE(torch::equal(SafetensorsFile(path).read("t", torch::kFloat), after));
}

// ---- FP8 e4m3fn ----

TEST(F8E4M3, DecodesHandCheckedCodes) {
  // code -> value, worked out by hand from S.EEEE.MMM with bias 7.
  const std::vector<std::pair<uint8_t, float>> table = {
      {0x00, 0.0f},          {0x80, -0.0f},          {0x7E, 448.0f},         {0xFE, -448.0f},
      {0x01, 0.001953125f},  // 2^-9, smallest subnormal
      {0x07, 0.013671875f},  // 7 * 2^-9, largest subnormal
      {0x08, 0.015625f},     // 2^-6, smallest normal
      {0x38, 1.0f},          {0xB8, -1.0f},          {0x18, 0.0625f},        {0x3C, 1.5f},
      {0x41, 2.25f},         {0x77, 240.0f},         {0x78, 256.0f},
  };
  for (const auto& [code, value] : table) {
    float got = decode_f8_e4m3(torch::tensor({int64_t(code)}, torch::kByte)).item<float>();
    EXPECT_EQ(got, value) << "code 0x" << std::hex << int(code);
    EXPECT_EQ(std::signbit(got), std::signbit(value)) << "code 0x" << std::hex << int(code);
  }
  torch::Tensor nan = decode_f8_e4m3(torch::tensor({0x7F, 0xFF}, torch::kByte));
  EXPECT_TRUE(std::isnan(nan[0].item<float>()));
  EXPECT_TRUE(std::isnan(nan[1].item<float>()));
  // 0x7F is the only NaN pattern: 0x7E and 0x77 are finite (no inf, no other NaNs in e4m3fn).
  torch::Tensor all = decode_f8_e4m3(torch::arange(256, torch::kLong).to(torch::kByte));
  EXPECT_EQ(torch::isnan(all).sum().item<int64_t>(), 2);
  EXPECT_EQ(torch::isinf(all).sum().item<int64_t>(), 0);
  EXPECT_EQ(all.nan_to_num(0).abs().max().item<float>(), 448.0f);
}

TEST(F8E4M3, EncodesHandCheckedValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<float, uint8_t>> table = {
      {0.0f, 0x00},        {-0.0f, 0x80},       {1.0f, 0x38},       {-1.0f, 0xB8},
      {0.0625f, 0x18},     {448.0f, 0x7E},      {-448.0f, 0xFE},
      {0.001953125f, 0x01},                     // 2^-9
      {1000.0f, 0x7E},     {-1e30f, 0xFE},      {inf, 0x7E},        {-inf, 0xFE},  // saturate
      {460.0f, 0x7E},                           // between 448 and the would-be 480
      {1.0625f, 0x38},     // tie between 1.0 (even) and 1.125: to even
      {1.1875f, 0x3A},     // tie between 1.125 and 1.25 (even): to even
      {1.06f, 0x38},       {1.07f, 0x39},       // either side of the tie
      {0.0009765625f, 0x00},                    // 2^-10: tie between 0 and 2^-9, to even (0)
      {0.0029296875f, 0x02},                    // 3 * 2^-10: tie between 1 and 2 * 2^-9, to even
      {0.0010f, 0x01},     {1e-6f, 0x00},       {-1e-6f, 0x80},
      {0.0146484375f, 0x08},                    // 7.5 * 2^-9: tie, rounds up into the first normal
      {15.5f, 0x58},       // tie between 15 (0x57) and 16 (0x58, even), across an exponent step
  };
  for (const auto& [value, code] : table) {
    uint8_t got = encode_f8_e4m3(torch::tensor({value})).item<uint8_t>();
    EXPECT_EQ(int(got), int(code)) << "value " << value;
  }
  torch::Tensor nan = encode_f8_e4m3(torch::tensor({std::nanf(""), -std::nanf("")}));
  EXPECT_EQ(nan[0].item<uint8_t>(), 0x7F);
  EXPECT_EQ(nan[1].item<uint8_t>(), 0xFF);
  // Shape is kept.
  EXPECT_EQ(encode_f8_e4m3(torch::zeros({2, 3, 4})).sizes(), torch::IntArrayRef({2, 3, 4}));
}

TEST(F8E4M3, EveryCodeRoundTrips) {
  torch::Tensor codes = torch::arange(256, torch::kLong).to(torch::kByte);
  torch::Tensor back = encode_f8_e4m3(decode_f8_e4m3(codes));
  EXPECT_TRUE(torch::equal(back, codes));
}

// The nearest e4m3 value to x by brute force over all codes (ties to the even code), saturating.
float nearest_e4m3(float x, const std::vector<float>& table) {
  if (std::fabs(x) >= 448.0f) return std::copysign(448.0f, x);
  float best = 0.0f;
  double best_err = INFINITY;
  int best_code = -1;
  for (int code = 0; code < 256; ++code) {
    const float v = table[code];
    if (std::isnan(v) || std::signbit(v) != std::signbit(x)) continue;
    const double err = std::fabs(double(v) - double(x));
    if (err < best_err || (err == best_err && (code & 1) == 0)) {
      best = v;
      best_err = err;
      best_code = code;
    }
  }
  EXPECT_GE(best_code, 0);
  return best;
}

TEST(F8E4M3, RandomValuesRoundToNearest) {
  FreshSeed seed;
  torch::Tensor decoded = decode_f8_e4m3(torch::arange(256, torch::kLong).to(torch::kByte));
  const std::vector<float> table(decoded.data_ptr<float>(), decoded.data_ptr<float>() + 256);
  // Log-uniform magnitudes from deep subnormal to beyond the max, both signs.
  torch::Tensor x = torch::exp2(torch::rand({2000}) * 24.0 - 14.0) * (torch::randint(0, 2, {2000}) * 2 - 1);
  x = x.to(torch::kFloat);
  torch::Tensor y = decode_f8_e4m3(encode_f8_e4m3(x));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float xi = x[i].item<float>(), yi = y[i].item<float>();
    ASSERT_EQ(yi, nearest_e4m3(xi, table)) << "x = " << xi;
    // Within e4m3 precision: half an ulp (2^-4 relative) for normals, 2^-10 absolute below 2^-6.
    if (std::fabs(xi) < 448.0f) {
      EXPECT_LE(std::fabs(yi - xi), std::max(std::fabs(xi) / 16.0f, 0.0009765625f)) << "x = " << xi;
    }
  }
}

TEST(F8E4M3, FileDecodesOnRead) {
  FreshSeed seed;
  ScratchDir dir;
  const std::string path = dir / "fp8.safetensors";
  torch::Tensor values = torch::randn({6, 10}) * 20;
  torch::Tensor bytes = encode_f8_e4m3(values);
  write_safetensors(path, {{"w", bytes}, {"raw", bytes}}, {}, {{"w", StDtype::F8_E4M3}});
  SafetensorsFile file(path);
  EXPECT_EQ(file.info("w").dtype, StDtype::F8_E4M3);
  EXPECT_EQ(file.info("raw").dtype, StDtype::U8);
  torch::Tensor expected = decode_f8_e4m3(bytes);
  EXPECT_TRUE(torch::equal(file.read("w", torch::kFloat), expected));
  EXPECT_TRUE(torch::equal(file.read("w", torch::kBFloat16), expected.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(file.read("w", torch::kFloat, Slice{1, 3, 4}), expected.narrow(1, 3, 4)));
  EXPECT_TRUE(torch::equal(file.read("raw", torch::kByte), bytes));
}

// ---- Writer errors ----

TEST(SafetensorsWriteErrors, NameTheFileAndTensor) {
  ScratchDir dir;
  const std::string path = dir / "out.safetensors";
  expect_input_error([&] { write_safetensors(path, {{"w", torch::zeros({2})}}, {}, {{"w", StDtype::F8_E4M3}}); },
                     {"out.safetensors", "'w'", "F8_E4M3"});
  expect_input_error([&] { write_safetensors(path, {{"c", torch::zeros({2}, torch::kComplexFloat)}}); },
                     {"out.safetensors", "'c'"});
  expect_input_error([&] { write_safetensors(path, {{"a", torch::zeros({2})}, {"a", torch::zeros({2})}}); },
                     {"out.safetensors", "'a'"});
  expect_input_error([&] { write_safetensors(path, {{"a", torch::zeros({2})}}, {}, {{"b", StDtype::F8_E4M3}}); },
                     {"out.safetensors", "'b'"});
  expect_input_error([&] { write_safetensors(dir / "no_such_dir/x.safetensors", {{"a", torch::zeros({2})}}); },
                     {"x.safetensors"});
  EXPECT_FALSE(exists(path));
}

// ---- Header validation: each defect names the file, and the tensor where there is one ----

struct BadFile : ScratchDir {
  std::string path = *this / "model.safetensors";
  void write(const std::string& header, const std::string& data = "", int64_t length = -1) const {
    write_raw(path, header, data, length);
  }
  void expect(const std::vector<std::string>& needles) const {
    std::vector<std::string> all = needles;
    all.push_back(path);
    expect_input_error([&] { SafetensorsFile f(path); }, all);
  }
};

TEST(SafetensorsErrors, MissingFile) {
  BadFile f;
  f.expect({});
}

TEST(SafetensorsErrors, Directory) {
  BadFile f;
  ASSERT_EQ(::mkdir(f.path.c_str(), 0755), 0);
  f.expect({"not a regular file"});
}

TEST(SafetensorsErrors, ShorterThanEightBytes) {
  BadFile f;
  std::ofstream(f.path, std::ios::binary) << "abc";
  f.expect({"3 bytes"});
}

TEST(SafetensorsErrors, HeaderLengthBeyondFile) {
  BadFile f;
  f.write("{}", "", 999999);
  f.expect({"header length 999999 exceeds file size 10"});
}

TEST(SafetensorsErrors, HeaderNotJson) {
  BadFile f;
  f.write("{oops: 1}");
  f.expect({"not valid JSON"});
}

TEST(SafetensorsErrors, HeaderNotObject) {
  BadFile f;
  f.write("[1, 2]");
  f.expect({"not a JSON object"});
}

TEST(SafetensorsErrors, EntryNotObject) {
  BadFile f;
  f.write(R"({"w": 3})");
  f.expect({"'w'", "not a JSON object"});
}

TEST(SafetensorsErrors, EntryMissingKeys) {
  BadFile f;
  f.write(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "dtype"});
  f.write(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "shape"});
  f.write(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd");
  f.expect({"'w'", "data_offsets"});
}

TEST(SafetensorsErrors, EntryWrongJsonTypes) {
  BadFile f;
  f.write(R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "dtype"});
  f.write(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "shape"});
  f.write(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "shape"});
  f.write(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": 4}})", "abcd");
  f.expect({"'w'", "data_offsets"});
  f.write(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 2, 4]}})", "abcd");
  f.expect({"'w'", "data_offsets"});
  f.write(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", "abcd");
  f.expect({"'w'", "data_offsets"});
  f.write(R"({"__metadata__": {"format": 1}})");
  f.expect({"__metadata__", "format"});
}

TEST(SafetensorsErrors, UnknownDtype) {
  BadFile f;
  f.write(R"({"model.layers.0.mlp.gate.weight": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", "a");
  f.expect({"tensor 'model.layers.0.mlp.gate.weight' has unknown dtype 'Q4'"});
}

TEST(SafetensorsErrors, NegativeShape) {
  BadFile f;
  f.write(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", "abcd");
  f.expect({"'w'", "-1"});
}

TEST(SafetensorsErrors, OffsetsReversed) {
  BadFile f;
  f.write(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", "abcd");
  f.expect({"'w'", "begin > end"});
}

TEST(SafetensorsErrors, TruncatedData) {
  ScratchDir dir;
  const std::string path = dir / "model.safetensors";
  write_safetensors(path, {{"a", torch::zeros({4})}, {"model.b", torch::zeros({4})}});
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(::truncate(path.c_str(), st.st_size - 3), 0);
  expect_input_error([&] { SafetensorsFile f(path); }, {path, "'model.b'", "truncated"});
}

TEST(SafetensorsErrors, SizeDisagreesWithShape) {
  BadFile f;
  f.write(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", "abcdefgh");
  f.expect({"'w'", "8 bytes", "12 bytes"});
  // Huge shapes must not wrap around to a plausible size.
  f.write(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})");
  f.expect({"'w'"});
}

// Two tensors over the same bytes would load as one; before the check such a file loaded and ran.
TEST(SafetensorsErrors, OverlappingTensors) {
  BadFile f;
  f.write(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
          std::string(12, 'x'));
  f.expect({"'a'", "'b'", "overlaps"});
  f.write(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
          std::string(8, 'x'));
  f.expect({"overlaps"});
  // A tensor inside a larger one, listed first by name but later by offset.
  f.write(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [3, 5]},
              "b": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
              "c": {"dtype": "U8", "shape": [2], "data_offsets": [8, 10]}})",
          std::string(10, 'x'));
  f.expect({"'a'", "'b'", "overlaps"});
}

TEST(Safetensors, GapsAndEmptyTensorsAreAllowed) {
  BadFile f;
  f.write(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
              "e": {"dtype": "F32", "shape": [0], "data_offsets": [2, 2]},
              "f": {"dtype": "F32", "shape": [0], "data_offsets": [2, 2]},
              "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
          std::string(12, 'x'));
  SafetensorsFile file(f.path);
  EXPECT_EQ(file.tensors().size(), 4u);
}

TEST(SafetensorsErrors, AbsentTensorAndBadSlices) {
  ScratchDir dir;
  const std::string path = dir / "model.safetensors";
  write_safetensors(path, {{"w", torch::zeros({4, 6})}});
  SafetensorsFile file(path);
  EXPECT_FALSE(file.has("v"));
  expect_input_error([&] { file.info("v"); }, {path, "'v'"});
  expect_input_error([&] { file.read("v", torch::kFloat); }, {path, "'v'"});
  for (Slice bad : {Slice{2, 0, 1}, Slice{-1, 0, 1}, Slice{0, 3, 2}, Slice{1, -1, 2}, Slice{1, 0, 7}, Slice{1, 2, -1}})
    expect_input_error([&] { file.read("w", torch::kFloat, bad); }, {path, "'w'"});
}

// ---- Checkpoint directories ----

struct ShardedCheckpoint : ScratchDir {
  torch::Tensor a = torch::randn({4, 6});
  torch::Tensor b = torch::randn({3, 2, 5}).to(torch::kBFloat16);
  torch::Tensor c = torch::randint(0, 100, {7}, torch::kLong);
  ShardedCheckpoint() {
    write_safetensors(*this / "model-00001-of-00002.safetensors", {{"layer.a", a}, {"layer.b", b}});
    write_safetensors(*this / "model-00002-of-00002.safetensors", {{"head.c", c}});
    write_index(R"({"metadata": {"total_size": 1}, "weight_map": {
        "layer.a": "model-00001-of-00002.safetensors",
        "layer.b": "model-00001-of-00002.safetensors",
        "head.c": "model-00002-of-00002.safetensors"}})");
  }
  void write_index(const std::string& text) const {
    std::ofstream(*this / "model.safetensors.index.json", std::ios::trunc) << text;
  }
  std::string dir() const { return path; }
};

TEST(Checkpoint, ReadsShardsThroughTheIndex) {
  FreshSeed seed;
  ShardedCheckpoint d;
  Checkpoint ckpt(d.dir());
  EXPECT_EQ(ckpt.dir(), d.dir());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"head.c", "layer.a", "layer.b"}));
  EXPECT_TRUE(ckpt.has("layer.b"));
  EXPECT_FALSE(ckpt.has("layer.z"));
  EXPECT_EQ(ckpt.info("layer.b").dtype, StDtype::BF16);
  EXPECT_EQ(ckpt.info("layer.b").shape, (std::vector<int64_t>{3, 2, 5}));
  EXPECT_TRUE(torch::equal(ckpt.read("layer.a", torch::kFloat), d.a));
  EXPECT_TRUE(bit_equal(ckpt.read("layer.b", torch::kBFloat16), d.b));
  EXPECT_TRUE(torch::equal(ckpt.read("head.c", torch::kLong), d.c));
  EXPECT_TRUE(torch::equal(ckpt.read("layer.a", torch::kFloat, Slice{1, 2, 3}), d.a.narrow(1, 2, 3)));
  EXPECT_TRUE(torch::equal(ckpt.read_expect("layer.b", {3, 2, 5}, torch::kFloat, Slice{2, 1, 4}),
                           d.b.narrow(2, 1, 4).to(torch::kFloat)));
}

TEST(Checkpoint, ReadsASingleFile) {
  FreshSeed seed;
  ScratchDir d;
  torch::Tensor w = torch::randn({5, 3});
  write_safetensors(d / "model.safetensors", {{"w", w}, {"v", torch::ones({2})}});
  Checkpoint ckpt(d.path);
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"v", "w"}));
  EXPECT_TRUE(torch::equal(ckpt.read_expect("w", {5, 3}, torch::kFloat), w));
  EXPECT_TRUE(torch::equal(ckpt.read("w", torch::kFloat, Slice{0, 4, 1}), w.narrow(0, 4, 1)));
}

TEST(Checkpoint, PrefersTheIndexOverASingleFile) {
  ShardedCheckpoint d;
  write_safetensors(d / "model.safetensors", {{"other", torch::ones({2})}});
  Checkpoint ckpt(d.dir());
  EXPECT_TRUE(ckpt.has("layer.a"));
  EXPECT_FALSE(ckpt.has("other"));
}

TEST(CheckpointErrors, MissingDirectory) {
  ScratchDir d;
  const std::string dir = d / "nowhere";
  expect_input_error([&] { Checkpoint c(dir); }, {dir});
}

TEST(CheckpointErrors, NoWeightsFile) {
  ScratchDir d;
  expect_input_error([&] { Checkpoint c(d.path); }, {d.path, "model.safetensors"});
}

TEST(CheckpointErrors, MalformedIndex) {
  ShardedCheckpoint d;
  d.write_index("{\"weight_map\": {");
  expect_input_error([&] { Checkpoint c(d.dir()); }, {"model.safetensors.index.json", "JSON"});
  d.write_index(R"({"metadata": {}})");
  expect_input_error([&] { Checkpoint c(d.dir()); }, {"model.safetensors.index.json", "weight_map"});
  d.write_index(R"({"weight_map": ["a"]})");
  expect_input_error([&] { Checkpoint c(d.dir()); }, {"model.safetensors.index.json", "weight_map"});
  d.write_index(R"({"weight_map": {"layer.a": 3}})");
  expect_input_error([&] { Checkpoint c(d.dir()); }, {"model.safetensors.index.json", "'layer.a'"});
}

TEST(CheckpointErrors, MissingShard) {
  ShardedCheckpoint d;
  ASSERT_EQ(::unlink((d / "model-00002-of-00002.safetensors").c_str()), 0);
  expect_input_error([&] { Checkpoint c(d.dir()); }, {"model-00002-of-00002.safetensors", "'head.c'"});
}

TEST(CheckpointErrors, TensorAbsentFromItsShard) {
  ShardedCheckpoint d;
  d.write_index(R"({"weight_map": {
      "layer.a": "model-00001-of-00002.safetensors",
      "head.c": "model-00001-of-00002.safetensors"}})");
  Checkpoint ckpt(d.dir());
  // Any use of the shard checks all of its index entries.
  expect_input_error([&] { ckpt.info("layer.a"); }, {"model-00001-of-00002.safetensors", "'head.c'"});
  expect_input_error([&] { ckpt.read("head.c", torch::kFloat); }, {"model-00001-of-00002.safetensors", "'head.c'"});
}

TEST(CheckpointErrors, BrokenShardHeader) {
  ShardedCheckpoint d;
  write_raw(d / "model-00002-of-00002.safetensors", "{not json", "");
  Checkpoint ckpt(d.dir());
  EXPECT_TRUE(torch::equal(ckpt.read("layer.a", torch::kFloat), d.a));  // the other shard still works
  expect_input_error([&] { ckpt.read("head.c", torch::kLong); }, {"model-00002-of-00002.safetensors", "JSON"});
}

TEST(CheckpointErrors, UnknownTensor) {
  ShardedCheckpoint d;
  Checkpoint ckpt(d.dir());
  const std::string message = "checkpoint " + d.dir() + " has no tensor 'layer.z'";
  expect_input_error([&] { ckpt.info("layer.z"); }, {message});
  expect_input_error([&] { ckpt.read("layer.z", torch::kFloat); }, {message});
  expect_input_error([&] { ckpt.read_expect("layer.z", {1}, torch::kFloat); }, {message});
}

TEST(CheckpointErrors, ReadExpectWrongShape) {
  ShardedCheckpoint d;
  Checkpoint ckpt(d.dir());
  expect_input_error([&] { ckpt.read_expect("layer.a", {6, 4}, torch::kFloat); },
                     {"model-00001-of-00002.safetensors: tensor 'layer.a' has shape [4, 6], expected [6, 4]"});
  expect_input_error([&] { ckpt.read_expect("head.c", {7, 1}, torch::kLong); },
                     {"model-00002-of-00002.safetensors", "'head.c'", "[7]", "[7, 1]"});
}

}  // namespace
}  // namespace lb
