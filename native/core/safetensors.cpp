#include "safetensors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "errors.h"
#include "file_read.h"
#include "json.h"

namespace fs = std::filesystem;

namespace wan {

size_t dtypeSize(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 1;
}

const char* dtypeName(DType d) {
  switch (d) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

std::optional<DType> dtypeFromName(const std::string& n) {
  static const std::pair<const char*, DType> table[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2}, {"I64", DType::I64},
      {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8}, {"U8", DType::U8}, {"BOOL", DType::BOOL}};
  for (const auto& [name, d] : table)
    if (n == name) return d;
  return std::nullopt;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (auto s : shape) n *= static_cast<uint64_t>(s);
  return n;
}

namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) out += '?';
    else out += c;
    if (out.size() > 200) { out += "..."; break; }
  }
  return out + "'";
}

}  // namespace

SafetensorsHeader parseSafetensorsHeader(const char* text, size_t textSize, uint64_t dataSize, const std::string& file) {
  json::ParseError perr;
  auto doc = json::parse(text, textSize, &perr, 16, kMaxHeaderValues);
  if (!doc) throwBadCheckpoint(file + ": safetensors header is not valid JSON (" + perr.message + " at byte " + std::to_string(perr.offset + 8) + ")");
  if (!doc->isObject()) throwBadCheckpoint(file + ": safetensors header is a JSON " + json::typeName(doc->type) + ", expected an object");

  SafetensorsHeader header;
  std::map<std::string, bool> seen;
  for (const auto& [name, v] : doc->members) {
    if (seen.count(name)) throwBadCheckpoint(file + ": tensor " + quote(name) + " appears twice in the header");
    seen[name] = true;
    if (name == "__metadata__") {
      if (!v.isObject()) throwBadCheckpoint(file + ": __metadata__ must be an object of strings");
      for (const auto& [k, mv] : v.members) {
        if (!mv.isString()) throwBadCheckpoint(file + ": __metadata__ value " + quote(k) + " is not a string");
        header.metadata[k] = mv.text;
      }
      continue;
    }
    const std::string where = file + ": tensor " + quote(name);
    if (!v.isObject()) throwBadCheckpoint(where + ": entry is not an object");
    const json::Value* dt = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offs = v.find("data_offsets");
    if (!dt || !dt->isString()) throwBadCheckpoint(where + ": missing or non-string 'dtype'");
    if (!shape || !shape->isArray()) throwBadCheckpoint(where + ": missing or non-array 'shape'");
    if (!offs || !offs->isArray() || offs->items.size() != 2) throwBadCheckpoint(where + ": 'data_offsets' must be an array of two integers");
    TensorInfo info;
    info.name = name;
    auto d = dtypeFromName(dt->text);
    if (!d) throwBadCheckpoint(where + ": unknown dtype " + quote(dt->text));
    info.dtype = *d;
    if (shape->items.size() > 16) throwBadCheckpoint(where + ": shape has more than 16 dimensions");
    // The product of the non-zero dims is bounded (JS numbers hold it exactly, and an empty tensor
    // [0, 2^40, 2^40] would overflow int64 strides), so numel * dtype size fits easily in 64 bits.
    uint64_t extent = 1;
    for (const auto& s : shape->items) {
      auto dim = s.asUint64();
      if (!dim) throwBadCheckpoint(where + ": shape entries must be non-negative integers");
      const uint64_t factor = std::max<uint64_t>(*dim, 1);
      if (factor > (1ull << 53) / extent) throwBadCheckpoint(where + ": shape has more than 2^53 elements");
      extent *= factor;
      info.shape.push_back(static_cast<int64_t>(*dim));
    }
    const uint64_t bytes = info.numel() * dtypeSize(info.dtype);
    auto b = offs->items[0].asUint64();
    auto e = offs->items[1].asUint64();
    if (!b || !e) throwBadCheckpoint(where + ": data_offsets must be non-negative integers");
    if (*b > *e) throwBadCheckpoint(where + ": data_offsets [" + std::to_string(*b) + ", " + std::to_string(*e) + "] are reversed");
    if (*e > dataSize)
      throwBadCheckpoint(where + ": data_offsets end " + std::to_string(*e) + " is past the end of the data (" + std::to_string(dataSize) + " bytes; file truncated?)");
    if (*e - *b != bytes)
      throwBadCheckpoint(where + ": holds " + std::to_string(*e - *b) + " bytes but its shape and dtype " + dt->text + " need " + std::to_string(bytes));
    info.begin = *b;
    info.end = *e;
    header.tensors.push_back(std::move(info));
  }
  // Overlap check: sort by begin; empty tensors cannot overlap anything.
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : header.tensors)
    if (t.end > t.begin) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->begin < sorted[i - 1]->end)
      throwBadCheckpoint(file + ": tensors " + quote(sorted[i - 1]->name) + " and " + quote(sorted[i]->name) + " overlap in the data section");
  return header;
}

SafetensorsHeader parseSafetensorsImage(const uint8_t* bytes, uint64_t size, const std::string& file, uint64_t* dataOffset) {
  if (size < 8) throwBadCheckpoint(file + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header (truncated?)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes) throwBadCheckpoint(file + ": header length " + std::to_string(n) + " is absurdly large (limit " + std::to_string(kMaxHeaderBytes) + "); not a safetensors file?");
  if (n > size - 8) throwBadCheckpoint(file + ": header length " + std::to_string(n) + " is larger than the file (" + std::to_string(size) + " bytes; truncated?)");
  if (dataOffset) *dataOffset = 8 + n;
  return parseSafetensorsHeader(reinterpret_cast<const char*>(bytes + 8), n, size - 8 - n, file);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  uint64_t size = 0;
  const int fd = openRegularFile(path, path, &size);
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size;
  if (f->size_ > 0) {
    // Private and writable: tensors viewing the mapping may be written by callers without touching
    // the file (copy-on-write pages), and reads stay zero-copy.
    void* p = mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throwBadCheckpoint("cannot map " + path + ": " + std::strerror(err));
    }
    f->data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::make_shared<SafetensorsFile>();
  f->file_ = MappedFile::open(path);
  f->header_ = parseSafetensorsImage(f->file_->data(), f->file_->size(), path, &f->dataOffset_);
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) f->byName_[f->header_.tensors[i].name] = i;
  return f;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : &header_.tensors[it->second];
}

void TensorStore::add(const std::shared_ptr<SafetensorsFile>& file) {
  files_.push_back(file);
  for (const auto& t : file->tensors()) {
    auto it = entries_.find(t.name);
    if (it != entries_.end())
      throwBadCheckpoint("tensor '" + t.name + "' is in both " + it->second.file->path() + " and " + file->path());
    entries_[t.name] = Entry{file, &t};
  }
}

TensorStore TensorStore::openFile(const std::string& path) {
  TensorStore s;
  s.source_ = path;
  s.add(SafetensorsFile::open(path));
  return s;
}

static bool safeShardName(const std::string& n) {
  if (n.empty() || n == "." || n == "..") return false;
  if (n.find('/') != std::string::npos || n.find('\\') != std::string::npos) return false;
  if (n.find('\0') != std::string::npos) return false;
  return true;
}

TensorStore TensorStore::openIndex(const std::string& indexPath) {
  // Real index files list a few thousand tensors in 100 KB to 1 MB; the value bound caps the memory.
  constexpr size_t kMaxIndexBytes = size_t{16} << 20;
  json::Value index = json::parseFile(indexPath, kMaxIndexBytes);
  const json::Value* map = index.isObject() ? index.find("weight_map") : nullptr;
  if (!map || !map->isObject()) throwBadCheckpoint(indexPath + ": missing 'weight_map' object");
  const fs::path dir = fs::path(indexPath).parent_path();
  TensorStore s;
  s.source_ = indexPath;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [tensor, shard] : map->members) {
    if (!shard.isString()) throwBadCheckpoint(indexPath + ": weight_map entry for '" + tensor + "' is not a file name");
    if (!safeShardName(shard.text))
      throwBadCheckpoint(indexPath + ": shard name '" + shard.text + "' for tensor '" + tensor + "' is not a plain file name inside the folder");
    if (!shards.count(shard.text)) {
      fs::path p = dir / shard.text;
      std::error_code ec;  // the throwing fs::exists would report a symlink loop as an internal error
      if (!fs::exists(p, ec)) throwBadCheckpoint(indexPath + ": shard " + p.string() + " (holding tensor '" + tensor + "') is missing" + (ec ? " (" + ec.message() + ")" : ""));
      auto f = SafetensorsFile::open(p.string());
      shards[shard.text] = f;
      s.add(f);
    }
    if (!shards[shard.text]->find(tensor))
      throwBadCheckpoint(indexPath + ": tensor '" + tensor + "' is listed in shard " + shard.text + " but that file does not hold it");
  }
  return s;
}

TensorStore TensorStore::openFolder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throwBadCheckpoint(dir + " is not a folder");
  std::vector<std::string> indexes, files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    auto endsWith = [&](const std::string& suf) { return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0; };
    if (endsWith(".safetensors.index.json")) indexes.push_back(e.path().string());
    else if (endsWith(".safetensors")) files.push_back(e.path().string());
  }
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  if (indexes.size() > 1) throwBadCheckpoint(dir + " holds several *.safetensors.index.json files; expected one");
  if (indexes.size() == 1) return openIndex(indexes[0]);
  if (files.empty()) throwBadCheckpoint(dir + " holds no .safetensors file");
  TensorStore s;
  s.source_ = dir;
  for (const auto& f : files) s.add(SafetensorsFile::open(f));
  return s;
}

std::optional<TensorStore::Entry> TensorStore::find(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const auto& [n, e] : entries_) out.push_back(n);
  return out;
}

uint64_t TensorStore::totalBytes() const {
  uint64_t total = 0;
  for (const auto& [n, e] : entries_) total += e.info->end - e.info->begin;
  return total;
}

}  // namespace wan
