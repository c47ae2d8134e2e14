// Per-environment data of the addon: constructors of the wrapped classes, so native results can
// be returned as instances (one Node process may hold several environments: worker threads).
#pragma once
#include <napi.h>

#include <map>
#include <string>

namespace wan::addon {

struct AddonData {
  std::map<std::string, Napi::FunctionReference> constructors;
};

AddonData& GetAddonData(Napi::Env env);
void SetConstructor(Napi::Env env, const std::string& name, Napi::Function ctor);
Napi::Function GetConstructor(Napi::Env env, const std::string& name);

}  // namespace wan::addon
