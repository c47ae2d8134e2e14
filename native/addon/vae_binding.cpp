// loadVae(dir, {device, dtype}, token?) -> NativeVae { encode, decode, info, dispose } (binding.d.ts).
// decode takes the pipeline's normalized latents (and can return uint8 frames); encode returns the
// normalized mean too.
#include <memory>

#include "async_job.h"
#include "bindings.h"
#include "js_tensor.h"
#include "model_wrap.h"
#include "models/wan_vae.h"
#include "pipeline/video_frames.h"

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

class NativeVae : public ModelWrap<NativeVae, WanVae> {
 public:
  static constexpr const char* kClassName = "NativeVae";
  static constexpr const char* kWhat = "this VAE";

  static void Register(Napi::Env env) {
    Define(env, {InstanceMethod("encode", &NativeVae::Encode), InstanceMethod("decode", &NativeVae::Decode)});
  }

  explicit NativeVae(const Napi::CallbackInfo& info) : Base(info) {}

  // info(): the fields before parameterCount, dtype and device.
  void Describe(Napi::Object o) const {
    const VaeConfig& c = model_->config();
    o.Set("zDim", Count(o.Env(), c.zDim));
    o.Set("version", model_->version());
    o.Set("scaleFactorSpatial", Count(o.Env(), c.scaleFactorSpatial));
    o.Set("scaleFactorTemporal", Count(o.Env(), c.scaleFactorTemporal));
  }

 private:
  // encode(video, options?, token?, onProgress?) -> { mean, logvar, normalized }
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    at::Tensor video = TensorFromJs(info[0], "video");
    TilingOptions tiling = ParseTiling(ObjectArg(info, 1, "options"));
    auto cancel = CancelToken::FromArg(info, 2);
    auto vae = model_;
    auto result = std::make_shared<VaeEncoding>();
    auto normalized = std::make_shared<at::Tensor>();
    return StartCall(
        info,
        [vae, video, tiling, result, normalized](RunContext& ctx) {
          *result = vae->encode(video, tiling, &ctx);
          *normalized = vae->normalize(result->mean);
          // To the host here: a device-to-host copy on the JS thread would block its event loop.
          result->mean = result->mean.cpu();
          result->logvar = result->logvar.cpu();
          *normalized = normalized->cpu();
        },
        [result, normalized](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("mean", TensorToJs(env, result->mean));
          o.Set("logvar", TensorToJs(env, result->logvar));
          o.Set("normalized", TensorToJs(env, *normalized));
          return o;
        },
        cancel, info.Length() > 3 ? info[3] : info.Env().Undefined());
  }

  // decode(normalizedLatents, options?, token?, onProgress?) -> { denormalized, video } or, with
  // options.output 'frames', { denormalized, frames }: uint8 frames made on the worker thread, so a
  // caller that only saves the video neither converts it on the JS thread nor receives the floats.
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    at::Tensor latents = TensorFromJs(info[0], "latents");
    Napi::Object options = ObjectArg(info, 1, "options");
    TilingOptions tiling = ParseTiling(options);
    const std::string output = StringOption(options, "output", "video");
    if (output != "video" && output != "frames")
      throw MakeError(info.Env(), ErrorCode::BadArgument, "option 'output' must be 'video' or 'frames'");
    const bool frames = output == "frames";
    auto cancel = CancelToken::FromArg(info, 2);
    auto vae = model_;
    auto denormalized = std::make_shared<at::Tensor>();
    auto video = std::make_shared<at::Tensor>();
    return StartCall(
        info,
        [vae, latents, tiling, frames, denormalized, video](RunContext& ctx) {
          *denormalized = vae->denormalize(latents);
          *video = vae->decode(*denormalized, tiling, &ctx);
          // To the host here: a device-to-host copy on the JS thread would block its event loop.
          *video = frames ? videoToFrames(*video) : video->cpu();
          *denormalized = denormalized->cpu();
        },
        [denormalized, video, frames](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("denormalized", TensorToJs(env, *denormalized));
          if (frames) o.Set("frames", TensorToJsHandOver(env, std::move(*video)));
          else o.Set("video", TensorToJs(env, *video));
          return o;
        },
        cancel, info.Length() > 3 ? info[3] : info.Env().Undefined());
  }
};

}  // namespace

void RegisterVae(Napi::Env env, Napi::Object exports) {
  NativeVae::Register(env);
  exports.Set("loadVae", Napi::Function::New(env, NativeVae::Load, "loadVae"));
}

}  // namespace wan::addon
