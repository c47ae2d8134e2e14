// Runs a long native call off the JS thread and settles a promise with its result. Progress goes
// through a thread-safe function; cancellation through a CancelToken's flag, checked between steps
// by the engine. Every exception becomes a JS Error with a `code` (errors.h); nothing the engine
// throws can abort the Node process, also not while the environment shuts down (worker threads):
// code that runs on the JS thread after the job first checks that JS can still run.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "core/errors.h"
#include "core/run_context.h"

namespace wan::addon {

// A JS-visible cancel flag. lib/ creates one per call and flips it from the AbortSignal.
class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  explicit CancelToken(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag() const { return flag_; }
  // The token passed as argument `index`, or a fresh private flag when undefined.
  static std::shared_ptr<std::atomic<bool>> FromArg(const Napi::CallbackInfo& info, size_t index);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Cancelled(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

// Per environment: at teardown (a worker thread terminated or exiting) the environment's cleanup
// hook sets the cancel flag of each of its jobs in flight and waits for their threads to stop, so
// no job outlives the environment it reports to. A process 'exit' listener does the same, waiting
// at most a few seconds, for process.exit() (which on the main thread runs no cleanup hook).
// Called once from the module's Init.
void RegisterShutdownHook(Napi::Env env);

// A JS Error with `code` from an ErrorCode and message.
Napi::Error MakeError(Napi::Env env, ErrorCode code, const std::string& message);
// Runs `fn` and turns any exception into (code, message).
bool CaptureErrors(const std::function<void()>& fn, ErrorCode* code, std::string* message);

// Runs a synchronous entry point's body, turning engine exceptions into coded JS errors (only
// Napi::Error crosses node-addon-api's callback wrapper safely).
template <typename Fn>
auto Sync(Napi::Env env, Fn fn) -> decltype(fn()) {
  decltype(fn()) result;
  ErrorCode code;
  std::string message;
  if (!CaptureErrors([&] { result = fn(); }, &code, &message)) throw MakeError(env, code, message);
  return result;
}

// A long call on its own thread (not libuv's pool of four, which fs and dns share, and whose
// in-flight work would hold up a worker thread's teardown until it ended).
class AsyncJob {
 public:
  using Work = std::function<void(RunContext&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;
  using DecorateError = std::function<void(Napi::Env, Napi::Object)>;

  // `work` runs on a new thread; `finish` runs on the JS thread afterwards to build the result.
  // Progress events and the settlement travel through one thread-safe function, in order: every
  // progress event reaches `onProgress` before the promise settles. `onProgress` may be undefined;
  // `cancel` may be null (a private flag is used). `onSettled` runs on the JS thread just before
  // the promise settles. `decorateError` (may be null) runs on the JS thread when `work` or
  // `finish` failed, to add properties to the error the promise rejects with (what the work saved
  // before failing); if it throws, the error goes out as it was.
  static Napi::Promise Start(Napi::Env env, Work work, Finish finish, Napi::Value onProgress,
                             std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled = nullptr,
                             DecorateError decorateError = nullptr);
};

// A native object that runs one job at a time: calls while busy are ERR_WAN_BUSY (lib/ queues
// them in call order), calls after dispose() are ERR_WAN_DISPOSED.
class BusyGuard {
 public:
  // Throws a JS error if busy or disposed; else marks busy.
  void Enter(Napi::Env env, const char* what);
  void Leave() { busy_.store(false); }
  bool Busy() const { return busy_.load(); }
  void MarkDisposed() { disposed_ = true; }
  bool Disposed() const { return disposed_; }

 private:
  std::atomic<bool> busy_{false};
  bool disposed_ = false;
};

}  // namespace wan::addon
