#include "js_tensor.h"

#include <cstring>

#include "addon_data.h"
#include "async_job.h"

namespace wan::addon {

AddonData& GetAddonData(Napi::Env env) {
  auto* data = env.GetInstanceData<AddonData>();
  if (!data) {
    data = new AddonData();
    env.SetInstanceData<AddonData>(data);
  }
  return *data;
}

void SetConstructor(Napi::Env env, const std::string& name, Napi::Function ctor) {
  GetAddonData(env).constructors[name] = Napi::Persistent(ctor);
}

Napi::Function GetConstructor(Napi::Env env, const std::string& name) {
  return GetAddonData(env).constructors.at(name).Value();
}

namespace {
[[noreturn]] void bad(Napi::Env env, const std::string& msg) { throw MakeError(env, ErrorCode::BadArgument, msg); }
}  // namespace

at::Tensor TensorFromJs(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) bad(env, what + " must be a tensor { dtype, shape, data }");
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value shapeV = o.Get("shape");
  Napi::Value dataV = o.Get("data");
  if (!shapeV.IsArray()) bad(env, what + ".shape must be an array of non-negative integers");
  if (!dataV.IsTypedArray()) bad(env, what + ".data must be a TypedArray");
  Napi::Array shapeA = shapeV.As<Napi::Array>();
  if (shapeA.Length() > 8) bad(env, what + ".shape has more than 8 dimensions");
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (uint32_t i = 0; i < shapeA.Length(); ++i) {
    Napi::Value d = shapeA.Get(i);
    if (!d.IsNumber()) bad(env, what + ".shape must be an array of non-negative integers");
    double x = d.As<Napi::Number>().DoubleValue();
    if (!(x >= 0) || x != static_cast<double>(static_cast<int64_t>(x)) || x > 1e12) bad(env, what + ".shape must be an array of non-negative integers");
    shape.push_back(static_cast<int64_t>(x));
    numel *= static_cast<uint64_t>(x);
  }
  Napi::TypedArray ta = dataV.As<Napi::TypedArray>();
  at::ScalarType st;
  switch (ta.TypedArrayType()) {
    case napi_float32_array: st = at::kFloat; break;
    case napi_float64_array: st = at::kDouble; break;
    case napi_bigint64_array: st = at::kLong; break;
    case napi_int32_array: st = at::kInt; break;
    case napi_uint8_array: st = at::kByte; break;
    default: bad(env, what + ".data must be a Float32Array, Float64Array, BigInt64Array, Int32Array or Uint8Array");
  }
  Napi::Value dtV = o.Get("dtype");
  if (dtV.IsString()) {
    std::string dt = dtV.As<Napi::String>().Utf8Value();
    if (dt == "bool" && st == at::kByte) st = at::kBool;
  }
  if (ta.ElementLength() != numel)
    bad(env, what + " has " + std::to_string(ta.ElementLength()) + " elements but its shape needs " + std::to_string(numel));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  if (numel > 0) {
    auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(t.data_ptr(), base, ta.ByteLength());
  }
  return t;
}

Napi::Object TensorToJs(Napi::Env env, const at::Tensor& input) {
  at::Tensor t = input.detach().to(at::kCPU).contiguous();
  const char* dtype;
  switch (t.scalar_type()) {
    case at::kFloat: dtype = "float32"; break;
    case at::kDouble: dtype = "float64"; break;
    case at::kLong: dtype = "int64"; break;
    case at::kInt: dtype = "int32"; break;
    case at::kByte: dtype = "uint8"; break;
    case at::kBool: dtype = "bool"; t = t.to(at::kByte); break;
    default: dtype = "float32"; t = t.to(at::kFloat); break;  // bf16, f16, f8
  }
  size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, bytes);
  if (bytes) std::memcpy(buf.Data(), t.data_ptr(), bytes);
  size_t n = static_cast<size_t>(t.numel());
  Napi::Value data;
  switch (t.scalar_type()) {
    case at::kFloat: data = Napi::Float32Array::New(env, n, buf, 0); break;
    case at::kDouble: data = Napi::Float64Array::New(env, n, buf, 0); break;
    case at::kLong: data = Napi::TypedArrayOf<int64_t>::New(env, n, buf, 0, napi_bigint64_array); break;
    case at::kInt: data = Napi::Int32Array::New(env, n, buf, 0); break;
    default: data = Napi::Uint8Array::New(env, n, buf, 0); break;
  }
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  Napi::Object o = Napi::Object::New(env);
  o.Set("dtype", dtype);
  o.Set("shape", shape);
  o.Set("data", data);
  return o;
}

std::string StringOption(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) bad(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double NumberOption(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) bad(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool BoolOption(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) bad(o.Env(), std::string("option '") + key + "' must be true or false");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return Napi::Object::New(info.Env());
  if (!info[index].IsObject()) bad(info.Env(), std::string(what) + " must be an object");
  return info[index].As<Napi::Object>();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) bad(info.Env(), std::string(what) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

uint64_t SeedValue(Napi::Env env, double seed) {
  // The range check comes first: a cast of a double beyond uint64_t is undefined.
  if (!(seed >= 0) || seed > 9007199254740991.0 || seed != static_cast<double>(static_cast<uint64_t>(seed)))
    bad(env, "option 'seed' must be an integer between 0 and 2^53-1");
  return static_cast<uint64_t>(seed);
}

}  // namespace wan::addon
