// One Register function per JS-visible concept; addon.cpp calls them all at load.
#pragma once
#include <napi.h>

namespace wan::addon {

void RegisterCore(Napi::Env env, Napi::Object exports);         // runtimeInfo, readSafetensors, randn, test hooks
void RegisterTransformer(Napi::Env env, Napi::Object exports);  // loadTransformer, Transformer
void RegisterTextEncoder(Napi::Env env, Napi::Object exports);  // loadTextEncoder, TextEncoder
void RegisterVae(Napi::Env env, Napi::Object exports);          // loadVae, Vae
void RegisterScheduler(Napi::Env env, Napi::Object exports);    // runScheduler
void RegisterPipeline(Napi::Env env, Napi::Object exports);     // loadPipeline, Pipeline

}  // namespace wan::addon
