// What a long native call gets from its caller: a progress sink and a cancel flag. The addon fills
// it from a JS AbortSignal and a thread-safe function; the C++ CLI/tests fill it directly.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "errors.h"

namespace wan {

struct ProgressEvent {
  std::string stage;    // load | encode-text | denoise | decode | done | warning
  int64_t step = 0;     // 1-based within the stage
  int64_t totalSteps = 0;
  std::string expert;   // denoise: 'high-noise' | 'low-noise' | 'transformer'
  int64_t timestep = -1;  // denoise: the scheduler timestep of this step
  double elapsedMs = 0; // since the call started
  double etaMs = -1;    // estimate for the rest of the stage, -1 when unknown
  std::string message;  // warnings
};

class RunContext {
 public:
  RunContext() = default;
  RunContext(std::function<void(const ProgressEvent&)> onProgress, const std::atomic<bool>* cancel)
      : onProgress_(std::move(onProgress)), cancel_(cancel) {}

  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed); }
  // Called between steps: throws ERR_WAN_ABORTED once the caller asked to stop.
  void checkCancelled() const {
    if (cancelled()) throw WanError(ErrorCode::Aborted, "the operation was aborted");
  }
  void progress(const ProgressEvent& e) const {
    if (onProgress_) onProgress_(e);
  }

 private:
  std::function<void(const ProgressEvent&)> onProgress_;
  const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace wan
