// Runs a long native call off the JS thread and settles a promise with its result. Progress goes
// through a thread-safe function; cancellation through a CancelToken's flag, checked between steps
// by the engine. Every exception becomes a JS Error with a `code` (errors.h); nothing the engine
// throws can abort the Node process, also not while the environment shuts down (worker threads).
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

// Flags of every job in flight, set when the environment shuts down so compute loops stop.
void RegisterShutdownHook(Napi::Env env);
void TrackFlag(const std::shared_ptr<std::atomic<bool>>& flag);
void UntrackFlag(const std::shared_ptr<std::atomic<bool>>& flag);
bool EnvShuttingDown();

// A JS Error with `code` from an ErrorCode and message.
Napi::Error MakeError(Napi::Env env, ErrorCode code, const std::string& message);
// Runs `fn` and turns any exception into (code, message).
bool CaptureErrors(const std::function<void()>& fn, ErrorCode* code, std::string* message);

class AsyncJob : public Napi::AsyncWorker {
 public:
  using Work = std::function<void(RunContext&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // `work` runs on a worker thread; `finish` runs on the JS thread afterwards to build the result.
  // `onProgress` may be undefined; `cancel` may be null (a private flag is used).
  static Napi::Promise Start(Napi::Env env, Work work, Finish finish, Napi::Value onProgress,
                             std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled = nullptr);

  ~AsyncJob() override;

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  AsyncJob(Napi::Env env, Work work, Finish finish, std::shared_ptr<std::atomic<bool>> cancel, std::function<void()> onSettled);
  void Settle();

  Napi::Promise::Deferred deferred_;
  Work work_;
  Finish finish_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::function<void()> onSettled_;
  Napi::ThreadSafeFunction progress_;
  bool hasProgress_ = false;
  ErrorCode errorCode_ = ErrorCode::Internal;
  std::string errorMessage_;
  bool failed_ = false;
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
