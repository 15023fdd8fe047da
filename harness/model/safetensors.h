#pragma once
// Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes of
// JSON describing every tensor, then the raw little-endian row-major data.
// Files are memory-mapped, so opening even a multi-GB shard costs only its header, and reading one
// slice of a tensor touches only that slice's bytes. Every defect of a file is an InputError that
// names the file (and the tensor), found when the file is opened rather than halfway through a run.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lb {

enum class StDtype { F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL };

const char* to_string(StDtype dtype);
int64_t element_size(StDtype dtype);

struct TensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data section
  int64_t numel() const;
};

// A slice along one dimension: elements [start, start+length) of dim `dim`.
struct Slice {
  int64_t dim = 0;
  int64_t start = 0;
  int64_t length = 0;
};

class SafetensorsFile {  // memory-mapped (mmap, read-only), non-copyable, movable
 public:
  // Validates the whole header; throws InputError naming the file for any defect.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // InputError naming the tensor and the file if absent.
  const TensorInfo& info(const std::string& name) const;

  // Copies a tensor (or one slice of it) into a new contiguous CPU tensor of dtype `out`.
  // Reads only the bytes of the slice. F8_E4M3 is decoded by decode_f8_e4m3; other dtypes
  // convert with Tensor::to (BF16/F16 -> F32 is exact).
  torch::Tensor read(const std::string& name, torch::ScalarType out,
                     std::optional<Slice> slice = std::nullopt) const;

 private:
  void release() noexcept;

  std::string path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  void* map_ = nullptr;                // the whole file
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;      // start of the data section, inside map_
  uint64_t data_size_ = 0;
};

// Writes tensors contiguously in the order given (header padded with spaces to 8 bytes, so data
// is aligned). Stored dtype follows the tensor's scalar type: F64/F32/F16/BF16/I64/I32/I16/I8/U8
// (kByte)/BOOL. `dtype_override` relabels a tensor's bytes as another dtype of the same element
// size, e.g. kByte tensors from encode_f8_e4m3 written as F8_E4M3.
// The file is written under a temporary name and renamed into place, so a reader that still maps
// the old file keeps valid memory. InputError naming the file (and tensor) on any failure.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       const std::map<std::string, StDtype>& dtype_override = {});

// OCP FP8 e4m3fn (bias 7, no infinities, S.1111.111 = NaN, max ±448).
// Encode float32 -> e4m3fn bytes: round to nearest even, saturate finite and infinite values to
// ±448, NaN -> 0x7F (with the input's sign). Returns a kByte tensor of the same shape.
torch::Tensor encode_f8_e4m3(const torch::Tensor& f32);
// Decode e4m3fn bytes (kByte) -> kFloat, exactly.
torch::Tensor decode_f8_e4m3(const torch::Tensor& bytes);

}  // namespace lb
