// Safetensors entries as at::Tensor: zero-copy views of the mapping where possible, and a
// WeightLoader that checks every name and shape a model asks for.
#pragma once
#include <ATen/ATen.h>

#include <set>
#include <string>
#include <vector>

#include "safetensors.h"

namespace wan {

at::ScalarType toScalarType(DType d, const std::string& where);
DType fromScalarType(at::ScalarType t);

// A CPU tensor over the file's bytes (no copy when the data is aligned for its dtype; the tensor
// keeps the mapping alive). fp8 needs libtorch >= 2.1 and is an error before that.
at::Tensor tensorView(const TensorStore::Entry& entry);

// Loads a component's weights by name, converting to the requested dtype and device one tensor at
// a time (never two full copies of the model). Every missing, mis-shaped or unused tensor is an
// ERR_WAN_BAD_CHECKPOINT naming it.
class WeightLoader {
 public:
  WeightLoader(TensorStore store, at::ScalarType dtype, at::Device device);

  bool has(const std::string& name) const { return store_.find(name).has_value(); }
  // The tensor `name`, which must have exactly `shape`, in the loader's dtype (floating tensors)
  // and device.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape);
  // Same, in an explicit dtype (e.g. float32 for norm weights).
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype);
  // The shape stored for `name` (error if missing).
  std::vector<int64_t> shapeOf(const std::string& name) const;
  // Throws naming the first tensor the model did not use.
  void finish() const;

  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  const TensorStore& store() const { return store_; }

 private:
  TensorStore store_;
  at::ScalarType dtype_;
  at::Device device_;
  std::set<std::string> used_;
};

}  // namespace wan
