// Safetensors files and sharded folders, memory-mapped. This file has no libtorch dependency so the
// header parser can be fuzzed on its own (test/fuzz); tensor_io.h turns entries into at::Tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wan {

enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

size_t dtypeSize(DType d);
const char* dtypeName(DType d);
std::optional<DType> dtypeFromName(const std::string& name);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section (after the header)
  uint64_t end = 0;
  uint64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order
  std::map<std::string, std::string> metadata;
};

// Largest header we accept: real checkpoints have headers of a few hundred KB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
// Largest number of JSON values in a header (a tensor entry is ~10): bounds the parser's memory.
constexpr size_t kMaxHeaderValues = 1u << 20;

// Validates a header (the JSON text) against the size of the data section. Throws
// WanError(BadCheckpoint) naming `fileLabel` and the offending tensor. Pure: no I/O.
SafetensorsHeader parseSafetensorsHeader(const char* json, size_t jsonSize, uint64_t dataSize, const std::string& fileLabel);

// Validates a whole file image (8-byte length, header, data).
SafetensorsHeader parseSafetensorsImage(const uint8_t* bytes, uint64_t size, const std::string& fileLabel, uint64_t* dataOffset);

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint8_t* mutableData() const { return data_; }  // private copy-on-write mapping
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  const std::string& path() const { return file_->path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;
  // Pointer to the tensor's bytes inside the (copy-on-write) mapping.
  uint8_t* dataOf(const TensorInfo& info) const { return file_->mutableData() + dataOffset_ + info.begin; }
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
  uint64_t dataOffset_ = 0;
  std::map<std::string, size_t> byName_;
};

// All tensors of one model component: a single file, a sharded folder with an index, or a folder
// of safetensors files.
class TensorStore {
 public:
  struct Entry {
    std::shared_ptr<SafetensorsFile> file;
    const TensorInfo* info;
  };

  static TensorStore openFile(const std::string& path);
  // Reads `<dir>/*.safetensors.index.json` when present (shard names must stay inside `dir`),
  // else every `*.safetensors` file in `dir`.
  static TensorStore openFolder(const std::string& dir);
  static TensorStore openIndex(const std::string& indexPath);

  std::optional<Entry> find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& source() const { return source_; }
  uint64_t totalBytes() const;

 private:
  void add(const std::shared_ptr<SafetensorsFile>& file);
  std::string source_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_;
};

}  // namespace wan
