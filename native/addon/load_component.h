// The shared body of loadTransformer / loadTextEncoder / loadVae: (dir, { device, dtype }, token?)
// -> Promise of a wrapped model. Device and dtype are parsed on the worker thread, so a bad name
// or a missing GPU rejects the promise with its code instead of throwing synchronously.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>

#include "async_job.h"
#include "core/device.h"
#include "js_tensor.h"

namespace wan::addon {

template <typename Model>
Napi::Value LoadComponent(const Napi::CallbackInfo& info, std::function<Napi::Value(Napi::Env, std::shared_ptr<Model>)> wrap) {
  std::string dir = StringArg(info, 0, "dir");
  Napi::Object options = ObjectArg(info, 1, "options");
  std::string deviceName = StringOption(options, "device", "cpu");
  std::string dtypeName = StringOption(options, "dtype", "float32");
  auto cancel = CancelToken::FromArg(info, 2);
  auto model = std::make_shared<std::shared_ptr<Model>>();
  return AsyncJob::Start(
      info.Env(),
      [dir, deviceName, dtypeName, model](RunContext& ctx) {
        at::Device device = parseDevice(deviceName);
        at::ScalarType dtype = parseDtype(dtypeName);
        ctx.checkCancelled();
        *model = Model::load(dir, dtype, device, &ctx);
      },
      [model, wrap](Napi::Env env) -> Napi::Value { return wrap(env, *model); }, info.Env().Undefined(), cancel);
}

}  // namespace wan::addon
