// Placeholder until the Vae binding lands.
#include "bindings.h"

namespace wan::addon {

void RegisterVae(Napi::Env, Napi::Object) {}

}  // namespace wan::addon
