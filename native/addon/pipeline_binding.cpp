// Placeholder until the Pipeline binding lands.
#include "bindings.h"

namespace wan::addon {

void RegisterPipeline(Napi::Env, Napi::Object) {}

}  // namespace wan::addon
