#include "async_job.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <new>
#include <thread>

#include "addon_data.h"

namespace wan::addon {

namespace {

// The jobs in flight of one environment: their cancel flags and how many threads still run.
struct EnvJobs {
  std::mutex mutex;
  std::condition_variable idle;
  std::multiset<std::shared_ptr<std::atomic<bool>>> flags;
  int running = 0;
};

std::mutex gEnvsMutex;
// Leaked on purpose: it must outlive every environment, including at process exit.
auto* gEnvs = new std::map<napi_env, std::shared_ptr<EnvJobs>>();

std::shared_ptr<EnvJobs> JobsOf(napi_env env) {
  std::lock_guard<std::mutex> lock(gEnvsMutex);
  auto it = gEnvs->find(env);
  return it == gEnvs->end() ? nullptr : it->second;
}

// Whether JS can run in `env` now. During teardown (worker terminated, process.exit in a worker)
// the loop may still deliver queued callbacks while every call into JS fails, and a failing call
// through node-addon-api's wrappers is fatal (building its Error fails too). Probe with the C API.
bool JsCallable(napi_env env) {
  napi_value object, undefined;
  if (napi_create_object(env, &object) != napi_ok || napi_get_undefined(env, &undefined) != napi_ok) return false;
  return napi_set_named_property(env, object, "probe", undefined) == napi_ok;
}

std::string firstLines(const std::string& s, size_t maxLines = 3) {
  size_t pos = 0;
  for (size_t i = 0; i < maxLines; ++i) {
    pos = s.find('\n', pos);
    if (pos == std::string::npos) return s;
    ++pos;
  }
  return s.substr(0, pos > 0 ? pos - 1 : 0);
}

bool looksLikeOom(const std::string& msg) {
  return msg.find("out of memory") != std::string::npos || msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
         msg.find("CUDA error: out of memory") != std::string::npos;
}

// process.exit() on the main thread runs no environment cleanup hook: it emits 'exit', then calls
// exit(), whose static destructors (libtorch's, oneDNN's) would run while job threads are still in
// a libtorch kernel (SIGSEGV). An atexit handler runs too late: oneDNN creates statics lazily,
// inside the first job, and their destructors run before any handler registered earlier. So this
// 'exit' listener stops the environment's jobs at their next step and waits for them, bounded so
// that a job stuck in one long kernel cannot hang the exit.
constexpr auto kExitWait = std::chrono::seconds(5);

Napi::Value StopJobsOnExit(const Napi::CallbackInfo& info) {
  std::shared_ptr<EnvJobs> jobs = JobsOf(info.Env());
  if (!jobs) return info.Env().Undefined();
  std::unique_lock<std::mutex> lock(jobs->mutex);
  for (const auto& f : jobs->flags) f->store(true);
  jobs->idle.wait_for(lock, kExitWait, [&] { return jobs->running == 0; });
  return info.Env().Undefined();
}
}  // namespace

void RegisterShutdownHook(Napi::Env env) {
  auto jobs = std::make_shared<EnvJobs>();
  {
    std::lock_guard<std::mutex> lock(gEnvsMutex);
    (*gEnvs)[env] = jobs;
  }
  napi_env raw = env;
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        napi_env env = static_cast<napi_env>(arg);
        std::shared_ptr<EnvJobs> jobs;
        {
          std::lock_guard<std::mutex> lock(gEnvsMutex);
          auto it = gEnvs->find(env);
          if (it == gEnvs->end()) return;
          jobs = it->second;
          gEnvs->erase(it);
        }
        // Stop this environment's jobs at their next step and wait for their threads: after this
        // hook the environment and its thread-safe functions are freed.
        std::unique_lock<std::mutex> lock(jobs->mutex);
        for (const auto& f : jobs->flags) f->store(true);
        jobs->idle.wait(lock, [&] { return jobs->running == 0; });
      },
      raw);
  Napi::Value process = env.Global().Get("process");
  Napi::Value on = process.IsObject() ? process.As<Napi::Object>().Get("on") : env.Undefined();
  if (on.IsFunction())
    on.As<Napi::Function>().Call(process, {Napi::String::New(env, "exit"), Napi::Function::New(env, StopJobsOnExit, "wanVideoStopJobs")});
}

Napi::Error MakeError(Napi::Env env, ErrorCode code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, errorCodeName(code)));
  return err;
}

bool CaptureErrors(const std::function<void()>& fn, ErrorCode* code, std::string* message) {
  try {
    fn();
    return true;
  } catch (const WanError& e) {
    *code = e.code();
    *message = e.what();
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    *code = looksLikeOom(msg) ? ErrorCode::OutOfMemory : ErrorCode::Internal;
    *message = (*code == ErrorCode::OutOfMemory ? "out of memory: " : "libtorch error: ") + firstLines(msg) +
               (*code == ErrorCode::OutOfMemory ? " (use a smaller size or fewer frames; on a GPU, offload 'model' or 'sequential' needs less)" : "");
  } catch (const std::bad_alloc&) {
    *code = ErrorCode::OutOfMemory;
    *message = "out of memory (host allocation failed); try a smaller size, fewer frames or offload";
  } catch (const Napi::Error& e) {
    *code = ErrorCode::Internal;
    *message = e.Message();
  } catch (const std::exception& e) {
    *code = ErrorCode::Internal;
    *message = std::string("internal error: ") + e.what();
  } catch (...) {
    *code = ErrorCode::Internal;
    *message = "internal error: unknown exception";
  }
  return false;
}

// ---- CancelToken

void CancelToken::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "CancelToken",
                                    {InstanceMethod<&CancelToken::Cancel>("cancel"),
                                     InstanceAccessor<&CancelToken::Cancelled>("cancelled")});
  exports.Set("CancelToken", ctor);
  SetConstructor(env, "CancelToken", ctor);
}

CancelToken::CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {}

Napi::Value CancelToken::Cancel(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value CancelToken::Cancelled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }

std::shared_ptr<std::atomic<bool>> CancelToken::FromArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return std::make_shared<std::atomic<bool>>(false);
  if (!info[index].IsObject() || !info[index].As<Napi::Object>().InstanceOf(GetConstructor(info.Env(), "CancelToken")))
    throw MakeError(info.Env(), ErrorCode::BadArgument, "expected a CancelToken");
  return CancelToken::Unwrap(info[index].As<Napi::Object>())->flag();
}

// ---- AsyncJob

namespace {

struct Job {
  AsyncJob::Work work;
  AsyncJob::Finish finish;
  std::function<void()> onSettled;
  AsyncJob::DecorateError decorateError;
  std::shared_ptr<std::atomic<bool>> cancel;
  std::shared_ptr<EnvJobs> envJobs;
  napi_deferred deferred = nullptr;
  napi_threadsafe_function channel = nullptr;
  bool hasListener = false;
  bool failed = false;
  ErrorCode errorCode = ErrorCode::Internal;
  std::string errorMessage;
};

// What the job thread sends to the JS thread: a progress event, or "done" (then settle).
struct Message {
  bool done = false;
  ProgressEvent event;
};

void DeliverProgress(napi_env env, napi_value listener, const ProgressEvent& ev) {
  napi_value event;
  try {
    Napi::Env e(env);
    Napi::Object o = Napi::Object::New(e);
    o.Set("stage", ev.stage);
    o.Set("step", Napi::Number::New(e, static_cast<double>(ev.step)));
    o.Set("totalSteps", Napi::Number::New(e, static_cast<double>(ev.totalSteps)));
    if (!ev.expert.empty()) o.Set("expert", ev.expert);
    if (ev.timestep >= 0) o.Set("timestep", Napi::Number::New(e, static_cast<double>(ev.timestep)));
    o.Set("elapsedMs", Napi::Number::New(e, ev.elapsedMs));
    if (ev.etaMs >= 0) o.Set("etaMs", Napi::Number::New(e, ev.etaMs));
    if (!ev.message.empty()) o.Set("message", ev.message);
    event = o;
  } catch (...) {
    return;
  }
  // The C API, not Napi::Function::Call: the listener may throw, or end the environment
  // (process.exit in a worker), and neither may take the process down. lib/ reports listener errors.
  napi_value undefined, result;
  napi_get_undefined(env, &undefined);
  if (napi_call_function(env, undefined, listener, 1, &event, &result) != napi_ok) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
  }
}

void Settle(napi_env env, Job* job) {
  try {
    Napi::Env e(env);
    if (job->onSettled) job->onSettled();
    // Building the result can fail too (a result too large for an ArrayBuffer): that failure is
    // decorated like the work's own, so what the work saved still reaches the caller.
    Napi::Value result;
    ErrorCode code = job->errorCode;
    std::string message = job->errorMessage;
    if (!job->failed && CaptureErrors([&] { result = job->finish ? job->finish(e) : e.Undefined(); }, &code, &message)) {
      napi_resolve_deferred(env, job->deferred, result);
      return;
    }
    Napi::Error error = MakeError(e, code, message);
    if (job->decorateError) {
      ErrorCode ignoredCode;
      std::string ignoredMessage;
      CaptureErrors([&] { job->decorateError(e, error.Value()); }, &ignoredCode, &ignoredMessage);
    }
    napi_reject_deferred(env, job->deferred, error.Value());
  } catch (...) {
    // Building the result failed in a way CaptureErrors could not report: nothing safe is left to do.
  }
}

// Runs on the JS thread for each message, in the order sent; env is null when the environment
// is being torn down and the queue is only being emptied.
void OnMessage(napi_env env, napi_value listener, void* context, void* data) {
  std::unique_ptr<Message> message(static_cast<Message*>(data));
  auto* job = static_cast<Job*>(context);
  if (env == nullptr || !JsCallable(env)) return;
  if (message->done) Settle(env, job);
  else if (job->hasListener && listener != nullptr) DeliverProgress(env, listener, message->event);
}

void RunJob(Job* job) {
  std::shared_ptr<EnvJobs> envJobs = job->envJobs;  // the job may be freed once the channel is released
  std::function<void(const ProgressEvent&)> sink;
  if (job->hasListener) {
    sink = [job](const ProgressEvent& e) {
      auto* m = new Message{false, e};
      if (napi_call_threadsafe_function(job->channel, m, napi_tsfn_nonblocking) != napi_ok) delete m;
    };
  }
  RunContext ctx(sink, job->cancel.get());
  job->failed = !CaptureErrors([&] { job->work(ctx); }, &job->errorCode, &job->errorMessage);
  auto* done = new Message{true, {}};
  if (napi_call_threadsafe_function(job->channel, done, napi_tsfn_nonblocking) != napi_ok) delete done;
  std::shared_ptr<std::atomic<bool>> flag = job->cancel;
  // After this release the JS thread delivers the queued messages, then finalizes the channel,
  // which frees the job.
  napi_release_threadsafe_function(job->channel, napi_tsfn_release);
  std::lock_guard<std::mutex> lock(envJobs->mutex);
  envJobs->flags.erase(envJobs->flags.find(flag));
  if (--envJobs->running == 0) envJobs->idle.notify_all();
}

}  // namespace

Napi::Promise AsyncJob::Start(Napi::Env env, Work work, Finish finish, Napi::Value onProgress,
                              std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled,
                              DecorateError decorateError) {
  std::shared_ptr<EnvJobs> envJobs = JobsOf(env);
  if (!envJobs) throw MakeError(env, ErrorCode::Internal, "wan-video: the addon was not initialised in this environment");
  auto job = std::make_unique<Job>();
  job->work = std::move(work);
  job->finish = std::move(finish);
  job->onSettled = std::move(onSettled);
  job->decorateError = std::move(decorateError);
  job->cancel = cancel ? std::move(cancel) : std::make_shared<std::atomic<bool>>(false);
  job->envJobs = envJobs;
  job->hasListener = onProgress.IsFunction();
  napi_value promise;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &job->deferred, &promise), Napi::Promise());
  napi_value name = Napi::String::New(env, "wan-video job");
  NAPI_THROW_IF_FAILED(env,
                       napi_create_threadsafe_function(
                           env, job->hasListener ? static_cast<napi_value>(onProgress) : nullptr, nullptr, name, 0, 1, job.get(),
                           [](napi_env, void* data, void*) { delete static_cast<Job*>(data); }, job.get(), OnMessage, &job->channel),
                       Napi::Promise());
  Job* raw = job.release();  // owned by the channel from here: its finalizer frees the job
  {
    std::lock_guard<std::mutex> lock(envJobs->mutex);
    envJobs->flags.insert(raw->cancel);
    ++envJobs->running;
  }
  try {
    std::thread(RunJob, raw).detach();
  } catch (const std::exception& e) {
    {
      std::lock_guard<std::mutex> lock(envJobs->mutex);
      envJobs->flags.erase(envJobs->flags.find(raw->cancel));
      --envJobs->running;
    }
    std::string message = std::string("cannot start a thread: ") + e.what();
    napi_reject_deferred(env, raw->deferred, MakeError(env, ErrorCode::Internal, message).Value());
    napi_release_threadsafe_function(raw->channel, napi_tsfn_release);
  }
  return Napi::Promise(env, promise);
}

// ---- BusyGuard

void BusyGuard::Enter(Napi::Env env, const char* what) {
  if (disposed_) throw MakeError(env, ErrorCode::Disposed, std::string(what) + " was disposed; load it again");
  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true))
    throw MakeError(env, ErrorCode::Busy, std::string(what) + " is running another call; await it first");
}

}  // namespace wan::addon
