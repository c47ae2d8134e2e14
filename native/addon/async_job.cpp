#include "async_job.h"

#include <c10/util/Exception.h>

#include <new>

#include "addon_data.h"

namespace wan::addon {

namespace {
std::mutex gFlagsMutex;
std::set<std::shared_ptr<std::atomic<bool>>>* gFlags = new std::set<std::shared_ptr<std::atomic<bool>>>();
std::atomic<bool> gShuttingDown{false};

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
}  // namespace

void RegisterShutdownHook(Napi::Env env) {
  napi_add_env_cleanup_hook(
      env,
      [](void*) {
        gShuttingDown = true;
        std::lock_guard<std::mutex> lock(gFlagsMutex);
        for (const auto& f : *gFlags) f->store(true);
      },
      nullptr);
}

void TrackFlag(const std::shared_ptr<std::atomic<bool>>& flag) {
  std::lock_guard<std::mutex> lock(gFlagsMutex);
  gFlags->insert(flag);
}

void UntrackFlag(const std::shared_ptr<std::atomic<bool>>& flag) {
  std::lock_guard<std::mutex> lock(gFlagsMutex);
  gFlags->erase(flag);
}

bool EnvShuttingDown() { return gShuttingDown.load(); }

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
               (*code == ErrorCode::OutOfMemory ? " (try offload: 'model' or 'sequential', a smaller size or fewer frames)" : "");
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

AsyncJob::AsyncJob(Napi::Env env, Work work, Finish finish, std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled)
    : Napi::AsyncWorker(env, "wan-video"),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      finish_(std::move(finish)),
      cancel_(cancel ? std::move(cancel) : std::make_shared<std::atomic<bool>>(false)),
      onSettled_(std::move(onSettled)) {}

AsyncJob::~AsyncJob() {
  if (hasProgress_) progress_.Release();
  UntrackFlag(cancel_);
}

Napi::Promise AsyncJob::Start(Napi::Env env, Work work, Finish finish, Napi::Value onProgress,
                              std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled) {
  auto* job = new AsyncJob(env, std::move(work), std::move(finish), std::move(cancel), std::move(onSettled));
  if (onProgress.IsFunction()) {
    job->progress_ = Napi::ThreadSafeFunction::New(env, onProgress.As<Napi::Function>(), "wan-video progress", 0, 1);
    job->hasProgress_ = true;
  }
  TrackFlag(job->cancel_);
  Napi::Promise promise = job->deferred_.Promise();
  job->Queue();
  return promise;
}

void AsyncJob::Execute() {
  std::function<void(const ProgressEvent&)> sink;
  if (hasProgress_) {
    sink = [this](const ProgressEvent& e) {
      auto* copy = new ProgressEvent(e);
      napi_status st = progress_.NonBlockingCall(copy, [](Napi::Env env, Napi::Function cb, ProgressEvent* ev) {
        std::unique_ptr<ProgressEvent> owned(ev);
        if (env == nullptr || cb == nullptr) return;  // environment going away
        try {
          Napi::Object o = Napi::Object::New(env);
          o.Set("stage", ev->stage);
          o.Set("step", Napi::Number::New(env, static_cast<double>(ev->step)));
          o.Set("totalSteps", Napi::Number::New(env, static_cast<double>(ev->totalSteps)));
          if (!ev->expert.empty()) o.Set("expert", ev->expert);
          if (ev->timestep >= 0) o.Set("timestep", Napi::Number::New(env, static_cast<double>(ev->timestep)));
          o.Set("elapsedMs", Napi::Number::New(env, ev->elapsedMs));
          if (ev->etaMs >= 0) o.Set("etaMs", Napi::Number::New(env, ev->etaMs));
          if (!ev->message.empty()) o.Set("message", ev->message);
          cb.Call({o});
        } catch (...) {
          // A throwing progress listener must not break the job; lib/ reports listener errors itself.
        }
      });
      if (st != napi_ok) delete copy;
    };
  }
  RunContext ctx(sink, cancel_.get());
  failed_ = !CaptureErrors([&] { work_(ctx); }, &errorCode_, &errorMessage_);
}

void AsyncJob::OnOK() {
  Napi::Env env = Env();
  try {
    Napi::HandleScope scope(env);
    if (onSettled_) onSettled_();
    if (failed_) {
      deferred_.Reject(MakeError(env, errorCode_, errorMessage_).Value());
      return;
    }
    Napi::Value result;
    ErrorCode code;
    std::string msg;
    bool ok = CaptureErrors([&] { result = finish_ ? finish_(env) : env.Undefined(); }, &code, &msg);
    if (ok) deferred_.Resolve(result);
    else deferred_.Reject(MakeError(env, code, msg).Value());
  } catch (...) {
    // The environment is shutting down (a terminated worker thread): nothing to settle.
  }
}

void AsyncJob::OnError(const Napi::Error&) {
  // Execute never calls SetError; kept for completeness.
  OnOK();
}

// ---- BusyGuard

void BusyGuard::Enter(Napi::Env env, const char* what) {
  if (disposed_) throw MakeError(env, ErrorCode::Disposed, std::string(what) + " was disposed; load it again");
  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true))
    throw MakeError(env, ErrorCode::Busy, std::string(what) + " is running another call; await it first");
}

}  // namespace wan::addon
