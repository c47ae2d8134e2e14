// runScheduler(options, sample, modelOutputs): runs a sampler over given model outputs, one per
// step, and returns its timesteps, sigmas and every step's result (the scheduler parity entry).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "async_job.h"
#include "bindings.h"
#include "js_tensor.h"
#include "models/scheduler.h"

namespace wan::addon {

namespace {

Napi::Value RunScheduler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object options = ObjectArg(info, 0, "options");
  const std::string configPath = StringOption(options, "configPath", "");
  const std::string sampler = StringOption(options, "sampler", "unipc");
  const double steps = NumberOption(options, "steps", std::numeric_limits<double>::quiet_NaN());
  if (!std::isfinite(steps) || steps != std::floor(steps))
    throw MakeError(env, ErrorCode::BadArgument, "option 'steps' must be an integer >= 1");
  std::optional<double> shift;
  Napi::Value shiftValue = options.Get("shift");
  if (!shiftValue.IsUndefined() && !shiftValue.IsNull()) shift = NumberOption(options, "shift", 0);
  at::Tensor sample = TensorFromJs(info[1], "sample");
  at::Tensor modelOutputs = TensorFromJs(info[2], "modelOutputs");
  if (sample.scalar_type() != at::kFloat && sample.scalar_type() != at::kDouble)
    throw MakeError(env, ErrorCode::BadArgument, "sample must be float32 or float64");
  if (modelOutputs.scalar_type() != at::kFloat && modelOutputs.scalar_type() != at::kDouble)
    throw MakeError(env, ErrorCode::BadArgument, "modelOutputs must be float32 or float64");
  const auto n = static_cast<int64_t>(std::clamp(steps, -1.0, 1e9));  // makeScheduler checks the range

  struct Result {
    at::Tensor timesteps, sigmas, prevSamples;
  };
  auto result = std::make_shared<Result>();
  return AsyncJob::Start(
      env,
      [=](RunContext& ctx) {
        SchedulerConfig config = configPath.empty() ? SchedulerConfig{} : readSchedulerConfig(configPath);
        std::unique_ptr<Scheduler> scheduler = makeScheduler(config, sampler, n, shift);
        if (modelOutputs.dim() != sample.dim() + 1 || modelOutputs.size(0) != n || modelOutputs.sizes().slice(1) != sample.sizes())
          throwBadArgument("modelOutputs must have shape [steps, ...sample.shape]");
        std::vector<at::Tensor> prev;
        at::Tensor x = sample;
        for (int64_t i = 0; i < n; ++i) {
          ctx.checkCancelled();
          x = scheduler->step(modelOutputs[i], x);
          prev.push_back(x);
        }
        result->timesteps = at::tensor(scheduler->timesteps(), at::kLong);
        result->sigmas = at::tensor(scheduler->sigmas(), at::kFloat);
        result->prevSamples = at::stack(prev);
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("timesteps", TensorToJs(env, result->timesteps));
        out.Set("sigmas", TensorToJs(env, result->sigmas));
        out.Set("prevSamples", TensorToJs(env, result->prevSamples));
        return out;
      },
      env.Undefined(), nullptr);
}

}  // namespace

void RegisterScheduler(Napi::Env env, Napi::Object exports) {
  exports.Set("runScheduler", Napi::Function::New(env, RunScheduler, "runScheduler"));
}

}  // namespace wan::addon
