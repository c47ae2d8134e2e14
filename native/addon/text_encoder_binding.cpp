// loadTextEncoder(dir, { device, dtype }, token?) -> NativeTextEncoder wrapping a Umt5Encoder:
// encode(inputIds, attentionMask, token?) -> { lastHiddenState, promptEmbeds }, info(), dispose().
#include <memory>

#include "async_job.h"
#include "bindings.h"
#include "js_tensor.h"
#include "model_wrap.h"
#include "models/umt5_encoder.h"

namespace wan::addon {

namespace {

class TextEncoder : public ModelWrap<TextEncoder, Umt5Encoder> {
 public:
  static constexpr const char* kClassName = "NativeTextEncoder";
  static constexpr const char* kWhat = "the text encoder";

  static void Register(Napi::Env env) { Define(env, {InstanceMethod<&TextEncoder::Encode>("encode")}); }

  explicit TextEncoder(const Napi::CallbackInfo& info) : Base(info) {}

  // info(): the fields before parameterCount, dtype and device.
  void Describe(Napi::Object o) const {
    const TextEncoderConfig& c = model_->config();
    o.Set("dModel", Count(o.Env(), c.dModel));
    o.Set("numLayers", Count(o.Env(), c.numLayers));
  }

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    at::Tensor ids = TensorFromJs(info[0], "inputIds");
    at::Tensor mask = TensorFromJs(info[1], "attentionMask");
    auto cancel = CancelToken::FromArg(info, 2);
    auto model = model_;
    auto hidden = std::make_shared<at::Tensor>();
    auto embeds = std::make_shared<at::Tensor>();
    return StartCall(
        info,
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
        cancel, info.Env().Undefined());
  }
};

}  // namespace

void RegisterTextEncoder(Napi::Env env, Napi::Object exports) {
  TextEncoder::Register(env);
  exports.Set("loadTextEncoder", Napi::Function::New(env, TextEncoder::Load, "loadTextEncoder"));
}

}  // namespace wan::addon
