#include "errors.h"

namespace wan {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::BadCheckpoint: return "ERR_WAN_BAD_CHECKPOINT";
    case ErrorCode::BadArgument: return "ERR_WAN_BAD_ARGUMENT";
    case ErrorCode::NoCuda: return "ERR_WAN_NO_CUDA";
    case ErrorCode::OutOfMemory: return "ERR_WAN_OOM";
    case ErrorCode::Aborted: return "ERR_WAN_ABORTED";
    case ErrorCode::Busy: return "ERR_WAN_BUSY";
    case ErrorCode::Disposed: return "ERR_WAN_DISPOSED";
    case ErrorCode::Internal: return "ERR_WAN_INTERNAL";
  }
  return "ERR_WAN_INTERNAL";
}

}  // namespace wan
