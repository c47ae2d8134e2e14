// Safetensors entries as at::Tensor: zero-copy views of the mapping where possible, and a
// WeightLoader that checks every name and shape a model asks for.
#pragma once
#include <ATen/ATen.h>

#include <set>
#include <string>
#include <vector>

#include "run_context.h"
#include "safetensors.h"

namespace wan {

// "[2, 16, 3]": shapes in error messages.
std::string shapeString(at::IntArrayRef shape);

at::ScalarType toScalarType(DType d, const std::string& where);
DType fromScalarType(at::ScalarType t);

// A CPU tensor over the file's bytes (no copy when the data is aligned for its dtype; the tensor
// keeps the mapping alive). fp8 needs libtorch >= 2.1 and is an error before that.
at::Tensor tensorView(const TensorStore::Entry& entry);

// Where a model's weights come from: a checkpoint (WeightLoader) or seeded random values at any
// size (RandomWeights, for benchmarks and memory estimates at the real configs).
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  // The tensor `name`, which must have exactly `shape`, in the source's dtype (floating tensors)
  // and device.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape) { return get(name, shape, dtype()); }
  // Same, in an explicit dtype (e.g. float32 for norm weights).
  virtual at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) = 0;
  // Accounts for `name` (which must have `shape`) without loading it: a tied duplicate of a tensor
  // the model already took under another name. Sources without names to check ignore it.
  virtual void acceptDuplicate(const std::string& name, const std::vector<int64_t>& shape) { (void)name; (void)shape; }
  // Throws naming the first tensor the model did not use.
  virtual void finish() const = 0;
  virtual at::ScalarType dtype() const = 0;
  virtual at::Device device() const = 0;
};

// Loads a component's weights by name, converting to the requested dtype and device one tensor at
// a time (never two full copies of the model). Every missing, mis-shaped or unused tensor is an
// ERR_WAN_BAD_CHECKPOINT naming it. `ctx` (may be null) is checked before each tensor: an A14B
// expert's conversion takes minutes, and an abort must not wait for it (ERR_WAN_ABORTED; the
// model under construction, and with it what was loaded, is freed as the error unwinds).
class WeightLoader : public WeightSource {
 public:
  WeightLoader(TensorStore store, at::ScalarType dtype, at::Device device, const RunContext* ctx = nullptr);

  bool has(const std::string& name) const override { return store_.find(name).has_value(); }
  using WeightSource::get;
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) override;
  // The shape stored for `name` (error if missing).
  std::vector<int64_t> shapeOf(const std::string& name) const;
  void acceptDuplicate(const std::string& name, const std::vector<int64_t>& shape) override;
  void finish() const override;

  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override { return device_; }
  const TensorStore& store() const { return store_; }

 private:
  TensorStore store_;
  at::ScalarType dtype_;
  at::Device device_;
  const RunContext* ctx_;
  std::set<std::string> used_;
};

// Seeded random weights of any requested shape: N(0, 1/fan_in) for matrices and kernels, ones for
// 1-D tensors whose name says norm, zeros for other 1-D tensors (biases). Every name is "present".
class RandomWeights : public WeightSource {
 public:
  RandomWeights(uint64_t seed, at::ScalarType dtype, at::Device device);
  bool has(const std::string&) const override { return true; }
  using WeightSource::get;
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) override;
  void finish() const override {}
  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override { return device_; }

 private:
  at::Generator gen_;
  at::ScalarType dtype_;
  at::Device device_;
};

}  // namespace wan
