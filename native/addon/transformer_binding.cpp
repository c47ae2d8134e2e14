// loadTransformer(dir, { device, dtype }, token?) -> NativeTransformer wrapping a WanTransformer:
// forward({ hiddenStates, timestep, encoderHiddenStates }, { debug }, token?) -> { output, debug? },
// info(), dispose(). Also the test hooks _testAttention (chunked attention fallback vs one block)
// and _testAttentionOrder (the SDPA backend order).
#include <memory>

#include "async_job.h"
#include "bindings.h"
#include "js_tensor.h"
#include "model_wrap.h"
#include "models/attention.h"
#include "models/wan_transformer.h"

namespace wan::addon {

namespace {

class Transformer : public ModelWrap<Transformer, WanTransformer> {
 public:
  static constexpr const char* kClassName = "NativeTransformer";
  static constexpr const char* kWhat = "the transformer";

  static void Register(Napi::Env env) { Define(env, {InstanceMethod<&Transformer::Forward>("forward")}); }

  explicit Transformer(const Napi::CallbackInfo& info) : Base(info) {}

  // info(): the fields before parameterCount, dtype and device.
  void Describe(Napi::Object o) const {
    const TransformerConfig& c = model_->config();
    Napi::Env env = o.Env();
    o.Set("dim", Count(env, c.dim()));
    o.Set("numLayers", Count(env, c.numLayers));
    o.Set("numHeads", Count(env, c.numHeads));
    o.Set("inChannels", Count(env, c.inChannels));
    o.Set("outChannels", Count(env, c.outChannels));
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Object inputs = ObjectArg(info, 0, "inputs");
    at::Tensor hidden = TensorFromJs(inputs.Get("hiddenStates"), "inputs.hiddenStates");
    at::Tensor timestep = TensorFromJs(inputs.Get("timestep"), "inputs.timestep");
    at::Tensor context = TensorFromJs(inputs.Get("encoderHiddenStates"), "inputs.encoderHiddenStates");
    const bool wantDebug = BoolOption(ObjectArg(info, 1, "options"), "debug", false);
    auto cancel = CancelToken::FromArg(info, 2);
    auto model = model_;
    auto output = std::make_shared<at::Tensor>();
    auto debug = std::make_shared<TransformerDebug>();
    return StartCall(
        info,
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
        cancel, info.Env().Undefined());
  }
};

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
  // libtorch on the JS thread: in Sync, so that its errors are coded JS errors, not an abort.
  return Sync(env, [&] {
    Napi::Object out = Napi::Object::New(env);
    out.Set("chunked", TensorToJs(env, chunkedAttention(q, k, v, chunk)));
    out.Set("unchunked", TensorToJs(env, chunkedAttention(q, k, v, q.size(2))));
    out.Set("dispatched", TensorToJs(env, attention(q, k, v)));
    return out;
  });
}

// _testAttentionOrder(preferred?, libtorchOrder?) -> the order libtorch tries its SDPA backends in
// now. `preferred` (a comma list; '' = libtorch's own) is set when given; `libtorchOrder` replaces
// libtorch's list behind our back, the way a CUDA libtorch's first SDPA call does, after which
// ours is put back as attention() does.
Napi::Value TestAttentionOrder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string preferred = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const std::string libtorchOrder = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  const std::vector<std::string> now = Sync(env, [&] {
    if (info.Length() > 0 && info[0].IsString()) setAttentionBackendOrder(preferred);
    if (!libtorchOrder.empty()) {
      overrideLibtorchBackendOrderForTest(libtorchOrder);
      reapplyAttentionBackendOrder();
    }
    return attentionBackendOrder();
  });
  Napi::Array order = Napi::Array::New(env);
  for (const std::string& name : now) order.Set(order.Length(), name);
  return order;
}

}  // namespace

void RegisterTransformer(Napi::Env env, Napi::Object exports) {
  Transformer::Register(env);
  exports.Set("loadTransformer", Napi::Function::New(env, Transformer::Load, "loadTransformer"));
  exports.Set("_testAttention", Napi::Function::New(env, TestAttention, "_testAttention"));
  exports.Set("_testAttentionOrder", Napi::Function::New(env, TestAttentionOrder, "_testAttentionOrder"));
}

}  // namespace wan::addon
