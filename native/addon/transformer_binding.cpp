// Placeholder until the Transformer binding lands.
#include "bindings.h"

namespace wan::addon {

void RegisterTransformer(Napi::Env, Napi::Object) {}

}  // namespace wan::addon
