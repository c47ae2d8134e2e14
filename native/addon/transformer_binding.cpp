// loadTransformer(dir, { device, dtype }, token?) -> NativeTransformer wrapping a WanTransformer:
// forward({ hiddenStates, timestep, encoderHiddenStates }, { debug }, token?) -> { output, debug? },
// info(), dispose(). Also the test hook _testAttention (chunked attention fallback vs one block).
#include <memory>

#include "addon_data.h"
#include "async_job.h"
#include "bindings.h"
#include "core/device.h"
#include "js_tensor.h"
#include "load_component.h"
#include "models/attention.h"
#include "models/wan_transformer.h"

namespace wan::addon {

namespace {

class Transformer : public Napi::ObjectWrap<Transformer> {
 public:
  static void Register(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "NativeTransformer",
                                      {InstanceMethod<&Transformer::Forward>("forward"), InstanceMethod<&Transformer::Info>("info"),
                                       InstanceMethod<&Transformer::Dispose>("dispose")});
    SetConstructor(env, "NativeTransformer", ctor);
  }

  explicit Transformer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Transformer>(info) {}

  // Instances come only from loadTransformer, which hands over the loaded model.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<WanTransformer> model) {
    Napi::Object obj = GetConstructor(env, "NativeTransformer").New({});
    Unwrap(obj)->model_ = std::move(model);
    return obj;
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object inputs = ObjectArg(info, 0, "inputs");
    at::Tensor hidden = TensorFromJs(inputs.Get("hiddenStates"), "inputs.hiddenStates");
    at::Tensor timestep = TensorFromJs(inputs.Get("timestep"), "inputs.timestep");
    at::Tensor context = TensorFromJs(inputs.Get("encoderHiddenStates"), "inputs.encoderHiddenStates");
    const bool wantDebug = BoolOption(ObjectArg(info, 1, "options"), "debug", false);
    auto cancel = CancelToken::FromArg(info, 2);
    guard_.Enter(env, "the transformer");
    // The JS object stays alive (and its model with it) until the job settles.
    auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
    auto model = model_;
    auto output = std::make_shared<at::Tensor>();
    auto debug = std::make_shared<TransformerDebug>();
    return AsyncJob::Start(
        env,
        [model, hidden, timestep, context, output, debug, wantDebug](RunContext& ctx) {
          *output = model->forward(hidden, timestep, context, wantDebug ? debug.get() : nullptr, &ctx).to(at::kCPU);
        },
        [output, debug, wantDebug](Napi::Env env) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("output", TensorToJs(env, *output));
          if (wantDebug) {
            Napi::Object d = Napi::Object::New(env);
            for (const auto& [name, t] : debug->tensors) d.Set(name, TensorToJs(env, t));
            out.Set("debug", d);
          }
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
    if (!model_) throw MakeError(env, ErrorCode::Disposed, "the transformer was disposed; load it again");
    const TransformerConfig& c = model_->config();
    auto num = [&](int64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
    Napi::Object o = Napi::Object::New(env);
    o.Set("dim", num(c.dim()));
    o.Set("numLayers", num(c.numLayers));
    o.Set("numHeads", num(c.numHeads));
    o.Set("inChannels", num(c.inChannels));
    o.Set("outChannels", num(c.outChannels));
    o.Set("parameterCount", num(model_->parameterCount()));
    o.Set("dtype", dtypeToName(model_->dtype()));
    o.Set("device", model_->device().str());
    return o;
  }

  // Frees the weights now (a running forward keeps its own reference until it settles).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    guard_.MarkDisposed();
    model_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<WanTransformer> model_;
  BusyGuard guard_;
};

Napi::Value LoadTransformer(const Napi::CallbackInfo& info) {
  return LoadComponent<WanTransformer>(info, [](Napi::Env env, std::shared_ptr<WanTransformer> m) -> Napi::Value { return Transformer::Wrap(env, m); });
}

// _testAttention(q, k, v, queryChunk) -> { chunked, unchunked, dispatched }: the fallback with
// blocks of queryChunk queries, the fallback in one block, and the attention() entry point.
Napi::Value TestAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor q = TensorFromJs(info[0], "q"), k = TensorFromJs(info[1], "k"), v = TensorFromJs(info[2], "v");
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || k.sizes() != v.sizes() || q.size(0) != k.size(0) || q.size(1) != k.size(1) ||
      q.size(3) != k.size(3) || q.scalar_type() != k.scalar_type() || q.scalar_type() != v.scalar_type())
    throw MakeError(env, ErrorCode::BadArgument, "q [B,H,Sq,D], k and v [B,H,Sk,D] of one dtype expected");
  if (info.Length() < 4 || !info[3].IsNumber()) throw MakeError(env, ErrorCode::BadArgument, "queryChunk must be a number");
  const int64_t chunk = info[3].As<Napi::Number>().Int64Value();
  Napi::Object out = Napi::Object::New(env);
  out.Set("chunked", TensorToJs(env, chunkedAttention(q, k, v, chunk)));
  out.Set("unchunked", TensorToJs(env, chunkedAttention(q, k, v, q.size(2))));
  out.Set("dispatched", TensorToJs(env, attention(q, k, v)));
  return out;
}

}  // namespace

void RegisterTransformer(Napi::Env env, Napi::Object exports) {
  Transformer::Register(env);
  exports.Set("loadTransformer", Napi::Function::New(env, LoadTransformer, "loadTransformer"));
  exports.Set("_testAttention", Napi::Function::New(env, TestAttention, "_testAttention"));
}

}  // namespace wan::addon
