// Module entry of wan_video.node.
#include <napi.h>

#include "async_job.h"
#include "bindings.h"
#include "core/device.h"

namespace wan::addon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  configureThreads();
  RegisterShutdownHook(env);
  CancelToken::Register(env, exports);
  RegisterCore(env, exports);
  RegisterTransformer(env, exports);
  RegisterTextEncoder(env, exports);
  RegisterVae(env, exports);
  RegisterScheduler(env, exports);
  RegisterPipeline(env, exports);
  return exports;
}

}  // namespace wan::addon

static Napi::Object InitWanVideo(Napi::Env env, Napi::Object exports) { return wan::addon::Init(env, exports); }

NODE_API_MODULE(wan_video, InitWanVideo)
