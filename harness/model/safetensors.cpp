#include "harness/model/safetensors.h"

#include "harness/runtime/errors.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <stdexcept>

// The format is little-endian and we copy its bytes straight into tensors.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors reading assumes a little-endian host");

namespace lb {

namespace {

using nlohmann::json;

struct DtypeName {
  StDtype dtype;
  const char* name;
  int64_t size;
};

constexpr std::array<DtypeName, 11> kDtypes = {{
    {StDtype::F64, "F64", 8},
    {StDtype::F32, "F32", 4},
    {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2},
    {StDtype::F8_E4M3, "F8_E4M3", 1},
    {StDtype::I64, "I64", 8},
    {StDtype::I32, "I32", 4},
    {StDtype::I16, "I16", 2},
    {StDtype::I8, "I8", 1},
    {StDtype::U8, "U8", 1},
    {StDtype::BOOL, "BOOL", 1},
}};

const DtypeName& entry(StDtype dtype) {
  for (const DtypeName& d : kDtypes)
    if (d.dtype == dtype) return d;
  throw std::logic_error("unhandled StDtype");
}

std::optional<StDtype> parse_dtype(const std::string& s) {
  for (const DtypeName& d : kDtypes)
    if (s == d.name) return d.dtype;
  return std::nullopt;
}

// The torch type whose bytes equal the stored bytes. F8 has no torch type in LibTorch 1.13 and
// BOOL bytes other than 0/1 would be invalid torch bools, so both are read as raw bytes first.
torch::ScalarType raw_scalar_type(StDtype dtype) {
  switch (dtype) {
    case StDtype::F64: return torch::kDouble;
    case StDtype::F32: return torch::kFloat;
    case StDtype::F16: return torch::kHalf;
    case StDtype::BF16: return torch::kBFloat16;
    case StDtype::I64: return torch::kLong;
    case StDtype::I32: return torch::kInt;
    case StDtype::I16: return torch::kShort;
    case StDtype::I8: return torch::kChar;
    case StDtype::F8_E4M3:
    case StDtype::U8:
    case StDtype::BOOL: return torch::kByte;
  }
  throw std::logic_error("unhandled StDtype");
}

std::optional<StDtype> stored_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kDouble: return StDtype::F64;
    case torch::kFloat: return StDtype::F32;
    case torch::kHalf: return StDtype::F16;
    case torch::kBFloat16: return StDtype::BF16;
    case torch::kLong: return StDtype::I64;
    case torch::kInt: return StDtype::I32;
    case torch::kShort: return StDtype::I16;
    case torch::kChar: return StDtype::I8;
    case torch::kByte: return StDtype::U8;
    case torch::kBool: return StDtype::BOOL;
    default: return std::nullopt;
  }
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string quoted(const std::string& name) { return "'" + name + "'"; }

// A JSON integer >= 0 (nlohmann stores those as unsigned); nullopt for anything else.
std::optional<uint64_t> as_unsigned(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return uint64_t(j.get<int64_t>());
  return std::nullopt;
}

// Checks one header entry; `where` is "<file>: tensor '<name>'" for messages.
TensorInfo parse_entry(const std::string& where, const std::string& name, const json& j, uint64_t data_size) {
  if (!j.is_object()) throw InputError(where + " is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) throw InputError(where + " has no \"" + key + "\"");

  TensorInfo t;
  t.name = name;
  const json& dtype = j["dtype"];
  if (!dtype.is_string()) throw InputError(where + ": \"dtype\" is not a string");
  std::optional<StDtype> parsed = parse_dtype(dtype.get<std::string>());
  if (!parsed) throw InputError(where + " has unknown dtype " + quoted(dtype.get<std::string>()));
  t.dtype = *parsed;

  const json& shape = j["shape"];
  if (!shape.is_array()) throw InputError(where + ": \"shape\" is not a list");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      throw InputError(where + " has negative dimension " + std::to_string(d.get<int64_t>()) + " in its shape");
    std::optional<uint64_t> v = as_unsigned(d);
    if (!v) throw InputError(where + ": \"shape\" holds " + d.dump() + ", not an integer");
    if (*v > uint64_t(INT64_MAX)) throw InputError(where + ": dimension " + std::to_string(*v) + " is too large");
    t.shape.push_back(int64_t(*v));
    overflow = overflow || __builtin_mul_overflow(numel, *v, &numel);
  }

  const json& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !as_unsigned(offsets[0]) || !as_unsigned(offsets[1]))
    throw InputError(where + ": \"data_offsets\" is " + offsets.dump() + ", not [begin, end] with 0 <= begin");
  t.begin = *as_unsigned(offsets[0]);
  t.end = *as_unsigned(offsets[1]);
  if (t.begin > t.end)
    throw InputError(where + ": \"data_offsets\" [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                     "] has begin > end");
  if (t.end > data_size)
    throw InputError(where + " ends at data byte " + std::to_string(t.end) + " but the data section has only " +
                     std::to_string(data_size) + " bytes (file truncated?)");

  uint64_t expected = 0;
  overflow = overflow || __builtin_mul_overflow(numel, uint64_t(element_size(t.dtype)), &expected);
  const uint64_t actual = t.end - t.begin;
  if (overflow || expected != actual)
    throw InputError(where + " has " + std::to_string(actual) + " bytes of data but shape " + shape_str(t.shape) +
                     " of " + to_string(t.dtype) + " needs " +
                     (overflow ? std::string("more than 2^64") : std::to_string(expected)) + " bytes");
  return t;
}

// Tensors must not share bytes: two tensors over the same data would load as one, and a writer
// that produced that is broken. Gaps between tensors are allowed, as the format allows them.
void check_no_overlap(const std::string& path, const std::map<std::string, TensorInfo>& tensors) {
  std::vector<const TensorInfo*> by_offset;
  for (const auto& entry : tensors)
    if (entry.second.end > entry.second.begin) by_offset.push_back(&entry.second);  // empty tensors hold no bytes
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& before = *by_offset[i - 1];
    const TensorInfo& after = *by_offset[i];
    if (after.begin < before.end)
      throw InputError(path + ": tensor " + quoted(after.name) + " (data bytes " + std::to_string(after.begin) +
                       " to " + std::to_string(after.end) + ") overlaps tensor " + quoted(before.name) +
                       " (bytes " + std::to_string(before.begin) + " to " + std::to_string(before.end) + ")");
  }
}

std::array<float, 256> make_f8_table() {
  std::array<float, 256> table{};
  for (int code = 0; code < 256; ++code) {
    const int exponent = (code >> 3) & 0xF, mantissa = code & 0x7;
    float v;
    if (exponent == 0xF && mantissa == 0x7)
      v = std::nanf("");
    else if (exponent == 0)
      v = std::ldexp(float(mantissa), -9);  // subnormal: m * 2^-6 / 8
    else
      v = std::ldexp(1.0f + float(mantissa) / 8.0f, exponent - 7);
    table[code] = (code & 0x80) ? -v : v;
  }
  return table;
}

uint8_t encode_one(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  if (std::isnan(x)) return sign | 0x7F;
  const float a = std::fabs(x);
  // e4m3fn has no infinity: everything from the max finite value up saturates to it.
  if (a >= 448.0f) return sign | 0x7E;
  // Scaling by powers of two is exact, so nearbyint (ties to even) sees the exact quotient.
  // Below 2^-6 values are multiples of 2^-9; a result of 8 is exactly the code of 2^-6.
  if (a < 0.015625f) return sign | uint8_t(std::nearbyint(a * 512.0f));
  int e;
  const float f = std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  // a = (1 + m/8) * 2^(e-1); m == 8 carries into the exponent, which adding it to the code does.
  const int m = int(std::nearbyint((f * 2.0f - 1.0f) * 8.0f));
  return sign | uint8_t(((e - 1 + 7) << 3) + m);
}

}  // namespace

const char* to_string(StDtype dtype) { return entry(dtype).name; }

int64_t element_size(StDtype dtype) { return entry(dtype).size; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw InputError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw InputError(path + ": file is " + std::to_string(size) +
                     " bytes, shorter than the 8-byte header length (truncated?)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw InputError(path + ": cannot mmap: " + std::strerror(map_err));
  map_ = map;
  map_size_ = size;

  try {
    const uint8_t* bytes = static_cast<const uint8_t*>(map_);
    uint64_t header_len;
    std::memcpy(&header_len, bytes, 8);
    if (header_len > size - 8)
      throw InputError(path + ": header length " + std::to_string(header_len) + " exceeds file size " +
                       std::to_string(size) + " (truncated or not a safetensors file)");
    data_ = bytes + 8 + header_len;
    data_size_ = size - 8 - header_len;

    const char* text = reinterpret_cast<const char*>(bytes + 8);
    json header;
    try {
      header = json::parse(text, text + header_len);
    } catch (const json::exception& e) {
      throw InputError(path + ": header is not valid JSON (" + e.what() + ")");
    }
    if (!header.is_object()) throw InputError(path + ": header is not a JSON object");

    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object()) throw InputError(path + ": \"__metadata__\" is not a JSON object");
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          if (!m.value().is_string())
            throw InputError(path + ": \"__metadata__\" value for " + quoted(m.key()) + " is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string where = path + ": tensor " + quoted(it.key());
      tensors_[it.key()] = parse_entry(where, it.key(), it.value(), data_size_);
    }
    check_no_overlap(path, tensors_);
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { release(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      data_size_(std::exchange(other.data_size_, 0)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    data_ = std::exchange(other.data_, nullptr);
    data_size_ = std::exchange(other.data_size_, 0);
  }
  return *this;
}

void SafetensorsFile::release() noexcept {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
  data_size_ = 0;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw InputError(path_ + ": no tensor " + quoted(name));
  return it->second;
}

torch::Tensor SafetensorsFile::read(const std::string& name, torch::ScalarType out, std::optional<Slice> slice) const {
  const TensorInfo& t = info(name);
  std::vector<int64_t> shape = t.shape;
  // View the tensor as [outer, dim_size, inner] and copy rows [start, start+length) of the middle
  // dimension; without a slice the whole tensor is one such row.
  int64_t outer = 1, dim_size = t.numel(), inner = 1, start = 0, length = t.numel();
  if (slice) {
    const int64_t rank = int64_t(shape.size());
    if (slice->dim < 0 || slice->dim >= rank)
      throw InputError(path_ + ": tensor " + quoted(name) + " of shape " + shape_str(shape) + " has no dim " +
                       std::to_string(slice->dim) + " to slice");
    dim_size = shape[slice->dim];
    if (slice->start < 0 || slice->length < 0 || slice->start > dim_size - slice->length)
      throw InputError(path_ + ": tensor " + quoted(name) + " of shape " + shape_str(shape) + ": slice [" +
                       std::to_string(slice->start) + ", " + std::to_string(slice->start + slice->length) +
                       ") of dim " + std::to_string(slice->dim) + " is out of range");
    for (int64_t d = 0; d < slice->dim; ++d) outer *= shape[d];
    for (int64_t d = slice->dim + 1; d < rank; ++d) inner *= shape[d];
    start = slice->start;
    length = slice->length;
    shape[slice->dim] = length;
  }

  torch::Tensor raw = torch::empty(shape, torch::TensorOptions().dtype(raw_scalar_type(t.dtype)));
  const int64_t es = element_size(t.dtype);
  const size_t chunk = size_t(length * inner * es);
  const size_t stride = size_t(dim_size * inner * es);
  if (chunk > 0) {
    const uint8_t* src = data_ + t.begin + size_t(start * inner * es);
    uint8_t* dst = static_cast<uint8_t*>(raw.data_ptr());
    for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + size_t(o) * chunk, src + size_t(o) * stride, chunk);
  }

  if (t.dtype == StDtype::F8_E4M3) return decode_f8_e4m3(raw).to(out);
  if (t.dtype == StDtype::BOOL) return raw.ne(0).to(out);
  return raw.to(out);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata,
                       const std::map<std::string, StDtype>& dtype_override) {
  json header = json::object();
  std::vector<torch::Tensor> contiguous;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = path + ": tensor " + quoted(name);
    if (name.empty() || name == "__metadata__") throw InputError(where + " has a reserved name");
    if (!seen.insert(name).second) throw InputError(where + " is given twice");
    if (!tensor.defined()) throw InputError(where + " is undefined");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    std::optional<StDtype> dtype = stored_dtype(t.scalar_type());
    if (!dtype) throw InputError(where + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                                 ", which safetensors writing does not support");
    auto over = dtype_override.find(name);
    if (over != dtype_override.end()) {
      if (element_size(over->second) != element_size(*dtype))
        throw InputError(where + " cannot be written as " + to_string(over->second) + ": its elements are " +
                         std::to_string(element_size(*dtype)) + " bytes");
      dtype = over->second;
    }
    const uint64_t nbytes = uint64_t(t.numel()) * uint64_t(element_size(*dtype));
    header[name] = {{"dtype", to_string(*dtype)}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(t);
  }
  // A dtype override for a tensor not written is a caller's typo that would otherwise pass silently.
  for (const auto& [name, dtype] : dtype_override)
    if (!seen.count(name)) throw InputError(path + ": dtype override for tensor " + quoted(name) + ", which is not written");
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw InputError(path + ": cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const torch::Tensor& t : contiguous) {
    const size_t n = size_t(t.numel()) * t.element_size();
    if (ok && n > 0) ok = std::fwrite(t.data_ptr(), 1, n, f) == n;
  }
  const int write_err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    throw InputError(path + ": write failed: " + std::strerror(ok ? errno : write_err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw InputError(path + ": cannot rename " + tmp + " into place: " + std::strerror(err));
  }
}

torch::Tensor encode_f8_e4m3(const torch::Tensor& f32) {
  if (f32.scalar_type() != torch::kFloat) throw std::invalid_argument("encode_f8_e4m3: expects a float32 tensor");
  torch::Tensor in = f32.detach().to(torch::kCPU).contiguous();
  torch::Tensor out = torch::empty(in.sizes(), torch::TensorOptions().dtype(torch::kByte));
  const float* src = in.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t i = 0, n = in.numel(); i < n; ++i) dst[i] = encode_one(src[i]);
  return out.to(f32.device());
}

torch::Tensor decode_f8_e4m3(const torch::Tensor& bytes) {
  if (bytes.scalar_type() != torch::kByte) throw std::invalid_argument("decode_f8_e4m3: expects a uint8 tensor");
  static const std::array<float, 256> table = make_f8_table();
  torch::Tensor in = bytes.detach().to(torch::kCPU).contiguous();
  torch::Tensor out = torch::empty(in.sizes(), torch::TensorOptions().dtype(torch::kFloat));
  const uint8_t* src = in.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  for (int64_t i = 0, n = in.numel(); i < n; ++i) dst[i] = table[src[i]];
  return out.to(bytes.device());
}

}  // namespace lb
