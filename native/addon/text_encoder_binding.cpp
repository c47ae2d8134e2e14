// Placeholder until the TextEncoder binding lands.
#include "bindings.h"

namespace wan::addon {

void RegisterTextEncoder(Napi::Env, Napi::Object) {}

}  // namespace wan::addon
