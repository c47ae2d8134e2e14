// loadVae(dir, {device, dtype}, token?) -> NativeVae { encode, decode, info, dispose } (binding.d.ts).
// decode takes the pipeline's normalized latents; encode returns the normalized mean too.
#include <memory>

#include "addon_data.h"
#include "async_job.h"
#include "bindings.h"
#include "core/device.h"
#include "js_tensor.h"
#include "load_component.h"
#include "models/wan_vae.h"

namespace wan::addon {

namespace {

TilingOptions ParseTiling(const Napi::Object& o) {
  TilingOptions t;
  Napi::Value tiled = o.Get("tiled");
  if (tiled.IsBoolean()) {
    t.mode = tiled.As<Napi::Boolean>().Value() ? TilingOptions::Mode::On : TilingOptions::Mode::Off;
  } else if (tiled.IsString() && tiled.As<Napi::String>().Utf8Value() == "auto") {
    t.mode = TilingOptions::Mode::Auto;
  } else if (!tiled.IsUndefined() && !tiled.IsNull()) {
    throw MakeError(o.Env(), ErrorCode::BadArgument, "option 'tiled' must be true, false or 'auto'");
  }
  double size = NumberOption(o, "tileSize", static_cast<double>(t.tileSize));
  double overlap = NumberOption(o, "tileOverlap", static_cast<double>(t.tileOverlap));
  if (size != static_cast<double>(static_cast<int64_t>(size)) || overlap != static_cast<double>(static_cast<int64_t>(overlap)))
    throw MakeError(o.Env(), ErrorCode::BadArgument, "options 'tileSize' and 'tileOverlap' must be integers");
  t.tileSize = static_cast<int64_t>(size);
  t.tileOverlap = static_cast<int64_t>(overlap);
  return t;
}

class NativeVae : public Napi::ObjectWrap<NativeVae> {
 public:
  static void Register(Napi::Env env, Napi::Object) {
    Napi::Function ctor = DefineClass(env, "NativeVae",
                                      {InstanceMethod("encode", &NativeVae::Encode), InstanceMethod("decode", &NativeVae::Decode),
                                       InstanceMethod("info", &NativeVae::Info), InstanceMethod("dispose", &NativeVae::Dispose)});
    SetConstructor(env, "NativeVae", ctor);
  }
  explicit NativeVae(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeVae>(info) {}
  void Set(std::shared_ptr<WanVae> vae) { vae_ = std::move(vae); }

 private:
  std::shared_ptr<WanVae> Enter(Napi::Env env) {
    guard_.Enter(env, "this VAE");
    return vae_;
  }

  // encode(video, options?, token?, onProgress?) -> { mean, logvar, normalized }
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor video = TensorFromJs(info[0], "video");
    TilingOptions tiling = ParseTiling(ObjectArg(info, 1, "options"));
    auto cancel = CancelToken::FromArg(info, 2);
    auto vae = Enter(env);
    auto result = std::make_shared<VaeEncoding>();
    auto normalized = std::make_shared<at::Tensor>();
    return AsyncJob::Start(
        env,
        [vae, video, tiling, result, normalized](RunContext& ctx) {
          *result = vae->encode(video, tiling, &ctx);
          *normalized = vae->normalize(result->mean);
        },
        [result, normalized](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("mean", TensorToJs(env, result->mean.cpu()));
          o.Set("logvar", TensorToJs(env, result->logvar.cpu()));
          o.Set("normalized", TensorToJs(env, normalized->cpu()));
          return o;
        },
        info.Length() > 3 ? info[3] : env.Undefined(), cancel, [this] { guard_.Leave(); });
  }

  // decode(normalizedLatents, options?, token?, onProgress?) -> { denormalized, video }
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor latents = TensorFromJs(info[0], "latents");
    TilingOptions tiling = ParseTiling(ObjectArg(info, 1, "options"));
    auto cancel = CancelToken::FromArg(info, 2);
    auto vae = Enter(env);
    auto denormalized = std::make_shared<at::Tensor>();
    auto video = std::make_shared<at::Tensor>();
    return AsyncJob::Start(
        env,
        [vae, latents, tiling, denormalized, video](RunContext& ctx) {
          *denormalized = vae->denormalize(latents);
          *video = vae->decode(*denormalized, tiling, &ctx);
        },
        [denormalized, video](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("denormalized", TensorToJs(env, denormalized->cpu()));
          o.Set("video", TensorToJs(env, *video));
          return o;
        },
        info.Length() > 3 ? info[3] : env.Undefined(), cancel, [this] { guard_.Leave(); });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!vae_) throw MakeError(env, ErrorCode::Disposed, "this VAE was disposed; load it again");
    const VaeConfig& c = vae_->config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("zDim", Napi::Number::New(env, static_cast<double>(c.zDim)));
    o.Set("version", vae_->version());
    o.Set("scaleFactorSpatial", Napi::Number::New(env, static_cast<double>(c.scaleFactorSpatial)));
    o.Set("scaleFactorTemporal", Napi::Number::New(env, static_cast<double>(c.scaleFactorTemporal)));
    o.Set("parameterCount", Napi::Number::New(env, static_cast<double>(vae_->parameterCount())));
    o.Set("dtype", dtypeToName(vae_->dtype()));
    o.Set("device", vae_->device().str());
    return o;
  }

  // Releases the weights; a call in flight keeps its own reference until it settles.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    guard_.MarkDisposed();
    vae_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<WanVae> vae_;
  BusyGuard guard_;
};

// loadVae(dir, { device, dtype }?, token?) -> Promise<NativeVae>
Napi::Value LoadVae(const Napi::CallbackInfo& info) {
  return LoadComponent<WanVae>(info, [](Napi::Env env, std::shared_ptr<WanVae> m) -> Napi::Value {
    Napi::Object object = GetConstructor(env, "NativeVae").New({});
    NativeVae::Unwrap(object)->Set(std::move(m));
    return object;
  });
}

}  // namespace

void RegisterVae(Napi::Env env, Napi::Object exports) {
  NativeVae::Register(env, exports);
  exports.Set("loadVae", Napi::Function::New(env, LoadVae, "loadVae"));
}

}  // namespace wan::addon
