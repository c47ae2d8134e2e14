// The JS object around one loaded model (NativeTransformer, NativeTextEncoder, NativeVae): created
// only by its loader, runs one call at a time (BusyGuard), info() and dispose(). A binding derives
// from ModelWrap<Itself, Model>, names itself (kClassName, kWhat for error messages), adds its own
// methods and the fields of info() that are its own (a public Describe(Napi::Object)); the rest
// is shared here.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon_data.h"
#include "async_job.h"
#include "core/device.h"
#include "load_component.h"

namespace wan::addon {

template <typename Derived, typename Model>
class ModelWrap : public Napi::ObjectWrap<Derived> {
 public:
  using Base = ModelWrap<Derived, Model>;
  using Method = Napi::Value (Derived::*)(const Napi::CallbackInfo&);

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}

  // Defines the class with the binding's own methods, then info() and dispose().
  static void Define(Napi::Env env, std::vector<typename Napi::ObjectWrap<Derived>::PropertyDescriptor> methods) {
    methods.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("info", static_cast<Method>(&Base::Info)));
    methods.push_back(Napi::ObjectWrap<Derived>::InstanceMethod("dispose", static_cast<Method>(&Base::Dispose)));
    SetConstructor(env, Derived::kClassName, Napi::ObjectWrap<Derived>::DefineClass(env, Derived::kClassName, methods));
  }

  // loadX(dir, { device, dtype }, token?) -> Promise of an instance holding the loaded model.
  static Napi::Value Load(const Napi::CallbackInfo& info) { return LoadComponent<Model>(info, &Base::Wrap); }

 protected:
  // Starts a call off the JS thread: ERR_WAN_BUSY / ERR_WAN_DISPOSED unless idle. The JS object
  // (and this wrapper with it) stays alive until the job settles; `work` holds its own reference
  // to the model, so a dispose() meanwhile frees the weights only after the call.
  Napi::Value StartCall(const Napi::CallbackInfo& info, AsyncJob::Work work, AsyncJob::Finish finish,
                        std::shared_ptr<std::atomic<bool>> cancel, Napi::Value onProgress) {
    Napi::Env env = info.Env();
    guard_.Enter(env, Derived::kWhat);
    auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
    return AsyncJob::Start(env, std::move(work), std::move(finish), onProgress, std::move(cancel), [this, self]() {
      guard_.Leave();
      self->Reset();
    });
  }

  static Napi::Number Count(Napi::Env env, int64_t value) { return Napi::Number::New(env, static_cast<double>(value)); }

  std::shared_ptr<Model> model_;

 private:
  static Napi::Value Wrap(Napi::Env env, std::shared_ptr<Model> model) {
    Napi::Object obj = GetConstructor(env, Derived::kClassName).New({});
    Derived::Unwrap(obj)->model_ = std::move(model);
    return obj;
  }

  // { ...the binding's own fields, parameterCount, dtype, device }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) throw MakeError(env, ErrorCode::Disposed, std::string(Derived::kWhat) + " was disposed; load it again");
    Napi::Object o = Napi::Object::New(env);
    static_cast<Derived*>(this)->Describe(o);
    o.Set("parameterCount", Count(env, model_->parameterCount()));
    o.Set("dtype", dtypeToName(model_->dtype()));
    o.Set("device", model_->device().str());
    return o;
  }

  // Frees the weights now (a call in flight keeps its own reference until it settles).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    guard_.MarkDisposed();
    model_.reset();
    return info.Env().Undefined();
  }

  BusyGuard guard_;
};

}  // namespace wan::addon
