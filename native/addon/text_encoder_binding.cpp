// loadTextEncoder(dir, { device, dtype }, token?) -> NativeTextEncoder wrapping a Umt5Encoder:
// encode(inputIds, attentionMask, token?) -> { lastHiddenState, promptEmbeds }, info(), dispose().
#include <memory>

#include "addon_data.h"
#include "async_job.h"
#include "bindings.h"
#include "core/device.h"
#include "js_tensor.h"
#include "load_component.h"
#include "models/umt5_encoder.h"

namespace wan::addon {

namespace {

class TextEncoder : public Napi::ObjectWrap<TextEncoder> {
 public:
  static void Register(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "NativeTextEncoder",
                                      {InstanceMethod<&TextEncoder::Encode>("encode"), InstanceMethod<&TextEncoder::Info>("info"),
                                       InstanceMethod<&TextEncoder::Dispose>("dispose")});
    SetConstructor(env, "NativeTextEncoder", ctor);
  }

  explicit TextEncoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TextEncoder>(info) {}

  // Instances come only from loadTextEncoder, which hands over the loaded model.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<Umt5Encoder> model) {
    Napi::Object obj = GetConstructor(env, "NativeTextEncoder").New({});
    Unwrap(obj)->model_ = std::move(model);
    return obj;
  }

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    at::Tensor ids = TensorFromJs(info[0], "inputIds");
    at::Tensor mask = TensorFromJs(info[1], "attentionMask");
    auto cancel = CancelToken::FromArg(info, 2);
    guard_.Enter(env, "the text encoder");
    // The JS object stays alive (and its model with it) until the job settles.
    auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
    auto model = model_;
    auto hidden = std::make_shared<at::Tensor>();
    auto embeds = std::make_shared<at::Tensor>();
    return AsyncJob::Start(
        env,
        [model, ids, mask, hidden, embeds](RunContext& ctx) {
          *hidden = model->encode(ids, mask, &ctx).to(at::kCPU);
          *embeds = zeroPastPromptLengths(*hidden, mask);
        },
        [hidden, embeds](Napi::Env env) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("lastHiddenState", TensorToJs(env, *hidden));
          out.Set("promptEmbeds", TensorToJs(env, *embeds));
          return out;
        },
        env.Undefined(), cancel,
        [this, self]() {
          guard_.Leave();
          self->Reset();
        });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) throw MakeError(env, ErrorCode::Disposed, "the text encoder was disposed; load it again");
    const TextEncoderConfig& c = model_->config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("dModel", Napi::Number::New(env, static_cast<double>(c.dModel)));
    o.Set("numLayers", Napi::Number::New(env, static_cast<double>(c.numLayers)));
    o.Set("parameterCount", Napi::Number::New(env, static_cast<double>(model_->parameterCount())));
    o.Set("dtype", dtypeToName(model_->dtype()));
    o.Set("device", model_->device().str());
    return o;
  }

  // Frees the weights now (a running encode keeps its own reference until it settles).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    guard_.MarkDisposed();
    model_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Umt5Encoder> model_;
  BusyGuard guard_;
};

Napi::Value LoadTextEncoder(const Napi::CallbackInfo& info) {
  return LoadComponent<Umt5Encoder>(info, [](Napi::Env env, std::shared_ptr<Umt5Encoder> m) -> Napi::Value { return TextEncoder::Wrap(env, m); });
}

}  // namespace

void RegisterTextEncoder(Napi::Env env, Napi::Object exports) {
  TextEncoder::Register(env, exports);
  exports.Set("loadTextEncoder", Napi::Function::New(env, LoadTextEncoder, "loadTextEncoder"));
}

}  // namespace wan::addon
