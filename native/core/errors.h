// Typed errors of the whole native stack. The addon maps each code to a JS Error.code;
// nothing here knows about Node.
#pragma once
#include <stdexcept>
#include <string>

namespace wan {

enum class ErrorCode {
  BadCheckpoint,  // ERR_WAN_BAD_CHECKPOINT: a model file is missing, corrupt or does not match
  BadArgument,    // ERR_WAN_BAD_ARGUMENT: a caller-given option or tensor is invalid
  NoCuda,         // ERR_WAN_NO_CUDA: CUDA asked for but not built in or no device
  OutOfMemory,    // ERR_WAN_OOM
  Aborted,        // ERR_WAN_ABORTED: cancelled through the caller's signal
  Busy,           // ERR_WAN_BUSY: the object is running another call
  Disposed,       // ERR_WAN_DISPOSED: the object was disposed
  Internal,       // ERR_WAN_INTERNAL: a bug or an unexpected libtorch failure
};

const char* errorCodeName(ErrorCode code);

class WanError : public std::runtime_error {
 public:
  WanError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void throwBadCheckpoint(const std::string& msg) { throw WanError(ErrorCode::BadCheckpoint, msg); }
[[noreturn]] inline void throwBadArgument(const std::string& msg) { throw WanError(ErrorCode::BadArgument, msg); }

}  // namespace wan
