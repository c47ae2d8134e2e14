#include "tensor_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include <cmath>
#include <sstream>

#include "errors.h"

namespace wan {

std::string shapeString(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

at::ScalarType toScalarType(DType d, const std::string& where) {
  switch (d) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
    case DType::F8_E4M3:
    case DType::F8_E5M2:
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
      return d == DType::F8_E4M3 ? at::kFloat8_e4m3fn : at::kFloat8_e5m2;
#else
      throwBadCheckpoint(where + ": " + dtypeName(d) + " tensors need libtorch >= 2.1 (this build uses " TORCH_VERSION ")");
#endif
  }
  throwBadCheckpoint(where + ": unsupported dtype");
}

DType fromScalarType(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return DType::F64;
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
    case at::kFloat8_e4m3fn: return DType::F8_E4M3;
    case at::kFloat8_e5m2: return DType::F8_E5M2;
#endif
    default: throwBadArgument(std::string("unsupported tensor dtype ") + c10::toString(t));
  }
}

at::Tensor tensorView(const TensorStore::Entry& entry) {
  const TensorInfo& info = *entry.info;
  at::ScalarType st = toScalarType(info.dtype, entry.file->path() + ": tensor '" + info.name + "'");
  std::vector<int64_t> shape(info.shape.begin(), info.shape.end());
  auto opts = at::TensorOptions().dtype(st).device(at::kCPU);
  if (info.numel() == 0) return at::empty(shape, opts);
  uint8_t* ptr = entry.file->dataOf(info);
  if (reinterpret_cast<uintptr_t>(ptr) % dtypeSize(info.dtype) != 0) {
    // Unaligned for its dtype (the header length is not a multiple of 8): copy.
    at::Tensor out = at::empty(shape, opts);
    std::memcpy(out.data_ptr(), ptr, info.end - info.begin);
    return out;
  }
  auto keep = entry.file;  // the mapping lives as long as any view of it
  return at::from_blob(ptr, shape, [keep](void*) {}, opts);
}

WeightLoader::WeightLoader(TensorStore store, at::ScalarType dtype, at::Device device, const RunContext* ctx)
    : store_(std::move(store)), dtype_(dtype), device_(device), ctx_(ctx) {}

std::vector<int64_t> WeightLoader::shapeOf(const std::string& name) const {
  auto e = store_.find(name);
  if (!e) throwBadCheckpoint(store_.source() + ": missing tensor '" + name + "'");
  return e->info->shape;
}

at::Tensor WeightLoader::get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) {
  if (ctx_) ctx_->checkCancelled();
  auto e = store_.find(name);
  if (!e) throwBadCheckpoint(store_.source() + ": missing tensor '" + name + "' (expected shape " + shapeString(shape) + ")");
  if (e->info->shape != shape)
    throwBadCheckpoint(e->file->path() + ": tensor '" + name + "' has shape " + shapeString(e->info->shape) + ", expected " + shapeString(shape));
  used_.insert(name);
  at::Tensor t = tensorView(*e);
  // Every weight of these models is floating point; an integer one would load and then fail every
  // generation deep inside a matmul.
  if (!at::isFloatingType(t.scalar_type()))
    throwBadCheckpoint(e->file->path() + ": tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                       "; model weights are floating point (F32, F16, BF16)");
  // .to() copies only when dtype or device differ: same-dtype CPU weights stay views of the
  // (private, copy-on-write) mapping, so they cost page cache rather than process memory.
  return t.to(device_, dtype);
}

void WeightLoader::acceptDuplicate(const std::string& name, const std::vector<int64_t>& shape) {
  auto e = store_.find(name);
  if (!e) throwBadCheckpoint(store_.source() + ": missing tensor '" + name + "'");
  if (e->info->shape != shape)
    throwBadCheckpoint(e->file->path() + ": tensor '" + name + "' has shape " + shapeString(e->info->shape) + ", expected " + shapeString(shape));
  used_.insert(name);
}

void WeightLoader::finish() const {
  for (const auto& n : store_.names())
    if (!used_.count(n)) {
      auto e = store_.find(n);
      throwBadCheckpoint(e->file->path() + ": unexpected tensor '" + n + "' (not part of this model's architecture; wrong config.json?)");
    }
}

RandomWeights::RandomWeights(uint64_t seed, at::ScalarType dtype, at::Device device)
    : gen_(at::make_generator<at::CPUGeneratorImpl>(seed)), dtype_(dtype), device_(device) {}

at::Tensor RandomWeights::get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) {
  auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor t;
  if (shape.size() >= 2) {
    int64_t fanIn = 1;
    for (size_t i = 1; i < shape.size(); ++i) fanIn *= shape[i];
    // Generated on the CPU in float32 one tensor at a time, then moved: bounded host memory.
    t = at::randn(shape, gen_, opts).mul_(1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fanIn, 1))));
  } else if (name.find("norm") != std::string::npos) {
    t = at::ones(shape, opts);
  } else {
    t = at::zeros(shape, opts);
  }
  return t.to(device_, dtype);
}

}  // namespace wan
