// Tensors across the JS boundary: { dtype, shape, data } with a TypedArray `data`
// (float32/float64/int64/int32/uint8/bool). Copied both ways so no JS memory is touched off-thread.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace wan::addon {

// A JS array of at most 8 non-negative integer dims whose product is at most 2^53 (`numel`, may be
// null, gets it); else throws ERR_WAN_BAD_ARGUMENT naming `what`.
std::vector<int64_t> ShapeFromJs(const Napi::Value& value, const std::string& what, uint64_t* numel);
// Throws ERR_WAN_BAD_ARGUMENT naming `what` when the value is not a well-formed tensor, and a
// coded JS error (ERR_WAN_OOM) when libtorch cannot allocate it.
at::Tensor TensorFromJs(const Napi::Value& value, const std::string& what);
// bf16/f16 come back as float32 (JS has no such arrays). Calls libtorch and may throw engine
// errors (WanError OutOfMemory when the ArrayBuffer cannot be allocated): on the JS thread, call
// it inside Sync() or an AsyncJob's finish.
Napi::Object TensorToJs(Napi::Env env, const at::Tensor& tensor);
// TensorToJs without the copy: JS gets the tensor's own memory (freed when JS lets go of it). Only
// for a result the engine no longer holds nor writes. Copies where it cannot hand it over (not a
// contiguous CPU float32/uint8 tensor, or a runtime without external buffers).
Napi::Object TensorToJsHandOver(Napi::Env env, at::Tensor tensor);

// Option helpers with ERR_WAN_BAD_ARGUMENT messages naming the option.
std::string StringOption(const Napi::Object& o, const char* key, const std::string& fallback);
double NumberOption(const Napi::Object& o, const char* key, double fallback);
bool BoolOption(const Napi::Object& o, const char* key, bool fallback);
Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t index, const char* what);
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what);
// A seed as JS passes it: an integer in [0, 2^53-1] (the numbers a double holds exactly).
uint64_t SeedValue(Napi::Env env, double seed);

}  // namespace wan::addon
