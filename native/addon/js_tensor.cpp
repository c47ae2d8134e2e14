#include "js_tensor.h"

#include <cstdlib>
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

// The most elements a tensor crossing the boundary may have: no JS array holds more, and the
// product of the dims stays far from wrapping (libtorch multiplies them in 64 bits).
constexpr uint64_t kMaxElements = uint64_t{1} << 53;
}  // namespace

std::vector<int64_t> ShapeFromJs(const Napi::Value& value, const std::string& what, uint64_t* numel) {
  Napi::Env env = value.Env();
  const std::string rule = what + " must be an array of non-negative integers with at most 2^53 elements in all";
  if (!value.IsArray()) bad(env, rule);
  Napi::Array a = value.As<Napi::Array>();
  if (a.Length() > 8) bad(env, what + " has more than 8 dimensions");
  std::vector<int64_t> shape;
  // Zero dims are left out of the bound: libtorch still multiplies the others out (and fails on
  // an overflow) for an empty tensor.
  uint64_t nonzero = 1;
  bool empty = false;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value d = a.Get(i);
    if (!d.IsNumber()) bad(env, rule);
    const double x = d.As<Napi::Number>().DoubleValue();
    // The range check comes first: a cast of a double beyond int64_t is undefined.
    if (!(x >= 0) || x > static_cast<double>(kMaxElements) || x != static_cast<double>(static_cast<int64_t>(x))) bad(env, rule);
    const auto n = static_cast<uint64_t>(x);
    shape.push_back(static_cast<int64_t>(n));
    if (n == 0) {
      empty = true;
    } else {
      if (nonzero > kMaxElements / n) bad(env, rule);
      nonzero *= n;
    }
  }
  if (numel) *numel = empty ? 0 : nonzero;
  return shape;
}

at::Tensor TensorFromJs(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) bad(env, what + " must be a tensor { dtype, shape, data }");
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value dataV = o.Get("data");
  uint64_t numel = 0;
  std::vector<int64_t> shape = ShapeFromJs(o.Get("shape"), what + ".shape", &numel);
  if (!dataV.IsTypedArray()) bad(env, what + ".data must be a TypedArray");
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
  const auto* base = numel > 0 ? static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() : nullptr;
  const size_t bytes = ta.ByteLength();
  // libtorch on the JS thread: its errors (an allocation failure) must become coded JS errors.
  return Sync(env, [&] {
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
    if (base) std::memcpy(t.data_ptr(), base, bytes);
    return t;
  });
}

namespace {

// The { dtype, shape, data } object over `buf`, which holds t's elements as `out`.
Napi::Object TensorObject(Napi::Env env, const at::Tensor& t, const char* dtype, at::ScalarType out, Napi::ArrayBuffer buf) {
  const auto n = static_cast<size_t>(t.numel());
  Napi::Value data;
  switch (out) {
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

// `data` handed to JS as an external ArrayBuffer that calls `finalize(hint)` when collected; null
// where the runtime allows none (Electron's V8 sandbox): the caller then copies into V8's own.
napi_value ExternalBuffer(Napi::Env env, void* data, size_t bytes, napi_finalize finalize, void* hint) {
  napi_value raw;
  if (napi_create_external_arraybuffer(env, data, bytes, finalize, hint, &raw) == napi_ok) return raw;
  bool pending = false;
  napi_value exception;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &exception);
  return nullptr;
}

}  // namespace

Napi::Object TensorToJs(Napi::Env env, const at::Tensor& input) {
  at::Tensor t = input.detach();
  const char* dtype;
  at::ScalarType out = t.scalar_type();
  switch (t.scalar_type()) {
    case at::kFloat: dtype = "float32"; break;
    case at::kDouble: dtype = "float64"; break;
    case at::kLong: dtype = "int64"; break;
    case at::kInt: dtype = "int32"; break;
    case at::kByte: dtype = "uint8"; break;
    case at::kBool: dtype = "bool"; out = at::kByte; break;
    default: dtype = "float32"; out = at::kFloat; break;  // bf16, f16, f8
  }
  const auto n = static_cast<size_t>(t.numel());
  const size_t bytes = n * at::elementSize(out);
  // The buffer first, then one copy into it (converting dtype, device and strides on the way).
  // Allocated here and handed to JS as an external ArrayBuffer: when V8 allocates one itself and
  // fails, it kills the process (FatalProcessOutOfMemory); here a result too large for memory is
  // ERR_WAN_OOM (via CaptureErrors), and the caller keeps what it could save. (V8 counts the buffer
  // for its GC; Node frees it on the event loop, so a synchronous loop holds results till it yields.)
  void* dst = std::malloc(bytes > 0 ? bytes : 1);
  if (!dst)
    throw WanError(ErrorCode::OutOfMemory, "out of memory: the result needs " + std::to_string(bytes) +
                                               " bytes of host memory, which could not be allocated; use a smaller size, fewer frames or fewer videos");
  napi_value raw = ExternalBuffer(env, dst, bytes, [](napi_env, void* data, void*) { std::free(data); }, nullptr);
  if (!raw) {
    std::free(dst);
    NAPI_THROW_IF_FAILED(env, napi_create_arraybuffer(env, bytes, &dst, &raw), Napi::Object());
  }
  Napi::ArrayBuffer buf(env, raw);
  if (bytes) at::from_blob(dst, t.sizes(), at::TensorOptions().dtype(out)).copy_(t);
  return TensorObject(env, t, dtype, out, buf);
}

Napi::Object TensorToJsHandOver(Napi::Env env, at::Tensor tensor) {
  at::Tensor t = tensor.detach();
  tensor.reset();
  const at::ScalarType st = t.scalar_type();
  if (!t.is_cpu() || !t.is_contiguous() || t.numel() == 0 || (st != at::kFloat && st != at::kByte)) return TensorToJs(env, t);
  const size_t bytes = static_cast<size_t>(t.numel()) * at::elementSize(st);
  auto* holder = new at::Tensor(t);
  napi_value raw = ExternalBuffer(env, t.data_ptr(), bytes, [](napi_env, void*, void* hint) { delete static_cast<at::Tensor*>(hint); }, holder);
  if (!raw) {
    delete holder;
    return TensorToJs(env, t);
  }
  return TensorObject(env, t, st == at::kFloat ? "float32" : "uint8", st, Napi::ArrayBuffer(env, raw));
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
