// Placeholder until the Scheduler binding lands.
#include "bindings.h"

namespace wan::addon {

void RegisterScheduler(Napi::Env, Napi::Object) {}

}  // namespace wan::addon
