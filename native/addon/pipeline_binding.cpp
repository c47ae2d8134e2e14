// JS binding of the native pipeline: loadPipeline() -> Pipeline { generate, decode, info, dispose }.
#include <functional>
#include <memory>

#include "addon_data.h"
#include "async_job.h"
#include "bindings.h"
#include "core/device.h"
#include "js_tensor.h"
#include "pipeline/wan_pipeline.h"

namespace wan::addon {

namespace {

class Pipeline : public Napi::ObjectWrap<Pipeline> {
 public:
  static void Register(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "Pipeline",
                                      {InstanceMethod<&Pipeline::Generate>("generate"), InstanceMethod<&Pipeline::Decode>("decode"),
                                       InstanceMethod<&Pipeline::Info>("info"),
                                       InstanceMethod<&Pipeline::Dispose>("dispose"), InstanceMethod<&Pipeline::ClearCache>("clearPromptCache")});
    SetConstructor(env, "Pipeline", ctor);
  }

  explicit Pipeline(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Pipeline>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw MakeError(info.Env(), ErrorCode::BadArgument, "use loadPipeline() to create a Pipeline");
    auto* holder = info[0].As<Napi::External<std::shared_ptr<WanPipeline>>>().Data();
    pipeline_ = *holder;
  }

 private:
  // generate(request, token?, onProgress?) -> Promise<result>
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = ObjectArg(info, 0, "request");
    auto request = std::make_shared<GenerateRequest>();
    auto tensor = [&](const char* key, at::Tensor& dst) {
      Napi::Value v = o.Get(key);
      if (!v.IsUndefined() && !v.IsNull()) dst = TensorFromJs(v, key);
    };
    tensor("promptIds", request->promptIds);
    tensor("promptMask", request->promptMask);
    tensor("negativeIds", request->negativeIds);
    tensor("negativeMask", request->negativeMask);
    tensor("promptEmbeds", request->promptEmbeds);
    tensor("negativePromptEmbeds", request->negativeEmbeds);
    tensor("image", request->image);
    tensor("latents", request->latents);
    request->width = static_cast<int64_t>(NumberOption(o, "width", 0));
    request->height = static_cast<int64_t>(NumberOption(o, "height", 0));
    request->numFrames = static_cast<int64_t>(NumberOption(o, "numFrames", 0));
    request->steps = static_cast<int64_t>(NumberOption(o, "steps", 0));
    request->numVideosPerPrompt = static_cast<int64_t>(NumberOption(o, "numVideosPerPrompt", 1));
    request->guidanceScale = NumberOption(o, "guidanceScale", 1.0);
    if (!o.Get("guidanceScale2").IsUndefined()) request->guidanceScale2 = NumberOption(o, "guidanceScale2", 1.0);
    if (!o.Get("shift").IsUndefined()) request->shift = NumberOption(o, "shift", 1.0);
    request->sampler = StringOption(o, "sampler", "unipc");
    request->seed = SeedValue(env, NumberOption(o, "seed", 0));
    request->outputLatents = BoolOption(o, "outputLatents", false);
    request->returnFloat = BoolOption(o, "returnFloat", false);
    request->recordSteps = BoolOption(o, "recordSteps", false);
    TiledOption(o, request->tiledDecode, request->autoTiledDecode);
    auto pipeline = pipeline_;
    return Run(info, [pipeline, request](RunContext& ctx, GenerateResult& result) { pipeline->generateInto(*request, ctx, result); });
  }

  // decode({ latents, tiled, returnFloat }, token?, onProgress?) -> Promise<{ frames, video?, decoderInput, latents }>
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Object o = ObjectArg(info, 0, "request");
    auto request = std::make_shared<DecodeRequest>();
    Napi::Value latents = o.Get("latents");
    if (!latents.IsUndefined() && !latents.IsNull()) request->latents = TensorFromJs(latents, "latents");
    request->returnFloat = BoolOption(o, "returnFloat", false);
    TiledOption(o, request->tiledDecode, request->autoTiledDecode);
    auto pipeline = pipeline_;
    return Run(info, [pipeline, request](RunContext& ctx, GenerateResult& result) { pipeline->decode(*request, ctx, result); });
  }

  static void TiledOption(const Napi::Object& o, bool& on, bool& autoTiled) {
    const std::string tiled = StringOption(o, "tiled", "auto");
    on = tiled == "on";
    autoTiled = tiled == "auto";
  }

  // Runs `work` as this pipeline's one job (args: request, token?, onProgress?) and resolves with
  // the result's tensors. When it fails after the denoise loop, the error carries the final
  // `latents`, so that decode() can finish the work instead of it being lost.
  Napi::Value Run(const Napi::CallbackInfo& info, std::function<void(RunContext&, GenerateResult&)> work) {
    Napi::Env env = info.Env();
    auto cancel = CancelToken::FromArg(info, 1);
    guard_.Enter(env, "the pipeline");
    auto result = std::make_shared<GenerateResult>();
    Napi::ObjectReference self = Napi::Persistent(Value());
    auto selfRef = std::make_shared<Napi::ObjectReference>(std::move(self));
    return AsyncJob::Start(
        env,
        [work, result](RunContext& ctx) {
          work(ctx, *result);
          // The float video (returnFloat) to the host here, not on the JS thread when the result is built.
          if (result->video.defined()) result->video = result->video.to(at::kCPU);
        },
        [result](Napi::Env env) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          auto put = [&](const char* key, const at::Tensor& t) {
            if (t.defined()) out.Set(key, TensorToJs(env, t));
          };
          // The frames are the result's alone: JS gets their memory, no copy.
          if (result->frames.defined()) out.Set("frames", TensorToJsHandOver(env, std::move(result->frames)));
          put("video", result->video);
          put("latents", result->latents);
          put("decoderInput", result->decoderInput);
          put("promptEmbeds", result->promptEmbeds);
          put("negativePromptEmbeds", result->negativePromptEmbeds);
          put("latentsPerStep", result->latentsPerStep);
          put("modelTimestepPerStep", result->modelTimestepPerStep);
          put("condition", result->condition);
          put("timesteps", at::tensor(result->timesteps, at::kLong));
          put("sigmas", at::tensor(result->sigmas, at::kFloat));
          put("expertPerStep", at::tensor(result->expertPerStep, at::kLong));
          if (!result->attentionBackend.empty()) out.Set("attentionBackend", result->attentionBackend);
          return out;
        },
        info.Length() > 2 ? info[2] : env.Undefined(), cancel, [this, selfRef]() { guard_.Leave(); selfRef->Reset(); },
        [result](Napi::Env env, Napi::Object error) {
          if (result->latents.defined()) error.Set("latents", TensorToJs(env, result->latents.to(at::kCPU)));
        });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (guard_.Disposed()) throw MakeError(env, ErrorCode::Disposed, "the pipeline was disposed; load it again");
    const WanPipeline& p = *pipeline_;
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", familyName(p.family()));
    o.Set("className", p.modelIndex().className);
    o.Set("hasTransformer2", Napi::Boolean::New(env, p.modelIndex().hasTransformer2));
    o.Set("expandTimesteps", Napi::Boolean::New(env, p.modelIndex().expandTimesteps));
    if (p.modelIndex().boundaryRatio) o.Set("boundaryRatio", Napi::Number::New(env, *p.modelIndex().boundaryRatio));
    o.Set("numTrainTimesteps", Napi::Number::New(env, static_cast<double>(p.schedulerConfig().numTrainTimesteps)));
    o.Set("flowShift", Napi::Number::New(env, p.schedulerConfig().flowShift));
    const auto& vc = p.vaeConfig();
    const auto& tc = p.transformerConfig();
    o.Set("zDim", Napi::Number::New(env, static_cast<double>(vc.zDim)));
    o.Set("scaleFactorSpatial", Napi::Number::New(env, static_cast<double>(vc.scaleFactorSpatial)));
    o.Set("scaleFactorTemporal", Napi::Number::New(env, static_cast<double>(vc.scaleFactorTemporal)));
    o.Set("patchSize", Napi::Number::New(env, static_cast<double>(tc.patchSize[1])));
    o.Set("textDim", Napi::Number::New(env, static_cast<double>(tc.textDim)));
    o.Set("device", p.options().device.str());
    o.Set("dtype", dtypeToName(p.options().dtype));
    o.Set("cachedPrompts", Napi::Number::New(env, static_cast<double>(p.cachedPrompts())));
    o.Set("encodedPrompts", Napi::Number::New(env, static_cast<double>(p.encodedPrompts())));
    o.Set("offload", p.options().offload);
    o.Set("residentWeightBytes", Napi::Number::New(env, static_cast<double>(p.residentWeightBytes())));
    return o;
  }

  Napi::Value ClearCache(const Napi::CallbackInfo& info) {
    guard_.Enter(info.Env(), "the pipeline");
    pipeline_->clearPromptCache();
    guard_.Leave();
    return info.Env().Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    guard_.Enter(info.Env(), "the pipeline");
    pipeline_.reset();
    guard_.MarkDisposed();
    guard_.Leave();
    return info.Env().Undefined();
  }

  std::shared_ptr<WanPipeline> pipeline_;
  BusyGuard guard_;
};

// loadPipeline(dir, options, token?, onProgress?) -> Promise<Pipeline>
Napi::Value LoadPipeline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = StringArg(info, 0, "model folder");
  Napi::Object o = ObjectArg(info, 1, "options");
  // Parsed on the worker thread: a bad name or a missing GPU rejects the promise with its code.
  const std::string device = StringOption(o, "device", "cpu");
  const std::string dtype = StringOption(o, "dtype", "float32");
  const std::string textEncoderDevice = StringOption(o, "textEncoderDevice", device);
  const std::string vaeDtype = StringOption(o, "vaeDtype", "float32");
  const std::string offload = StringOption(o, "offload", "none");
  auto cancel = CancelToken::FromArg(info, 2);
  auto holder = std::make_shared<std::shared_ptr<WanPipeline>>();
  return AsyncJob::Start(
      env,
      [=](RunContext& ctx) {
        PipelineOptions options;
        options.device = parseDevice(device, "device");
        options.dtype = parseDtype(dtype, "dtype");
        options.textEncoderDevice = parseDevice(textEncoderDevice, "textEncoderDevice");
        options.vaeDtype = parseDtype(vaeDtype, "vaeDtype");
        if (offload != "none" && offload != "model" && offload != "sequential")
          throwBadArgument("option 'offload' is '" + offload + "'; allowed: 'none', 'model', 'sequential'");
        options.offload = offload;
        *holder = WanPipeline::load(dir, options, ctx);
      },
      [holder](Napi::Env env) -> Napi::Value {
        auto* ext = new std::shared_ptr<WanPipeline>(*holder);
        Napi::External<std::shared_ptr<WanPipeline>> e =
            Napi::External<std::shared_ptr<WanPipeline>>::New(env, ext, [](Napi::Env, std::shared_ptr<WanPipeline>* p) { delete p; });
        return GetConstructor(env, "Pipeline").New({e});
      },
      info.Length() > 3 ? info[3] : env.Undefined(), cancel);
}

}  // namespace

void RegisterPipeline(Napi::Env env, Napi::Object exports) {
  Pipeline::Register(env, exports);
  exports.Set("loadPipeline", Napi::Function::New(env, LoadPipeline, "loadPipeline"));
}

}  // namespace wan::addon
