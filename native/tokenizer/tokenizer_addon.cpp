// Module entry of wan_tokenizer.node: loadSentencePiece(path) -> { encode(text), vocabSize() }.
//
// Why a separate addon: Debian's libsentencepiece carries its own copy of protobuf, and linking it
// into the same .node as libtorch (which has another) crashes on load. Built apart it works, and
// the two addons can be loaded in either order. So this addon must never link libtorch.
#include <napi.h>

#include <memory>

#include "core/errors.h"
#include "sentencepiece_tokenizer.h"

namespace {

// errors.cpp (errorCodeName) belongs to the engine library, which this addon does not link.
const char* codeName(wan::ErrorCode code) {
  switch (code) {
    case wan::ErrorCode::BadCheckpoint: return "ERR_WAN_BAD_CHECKPOINT";
    case wan::ErrorCode::BadArgument: return "ERR_WAN_BAD_ARGUMENT";
    default: return "ERR_WAN_INTERNAL";
  }
}

Napi::Error makeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

// Runs `fn`, rethrowing engine and library failures as JS errors with a code.
template <typename Fn>
auto guarded(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const wan::WanError& e) {
    throw makeError(env, codeName(e.code()), e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw makeError(env, "ERR_WAN_INTERNAL", std::string("tokenizer error: ") + e.what());
  }
}

class Tokenizer : public Napi::ObjectWrap<Tokenizer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTokenizer",
                       {InstanceMethod<&Tokenizer::Encode>("encode"), InstanceMethod<&Tokenizer::VocabSize>("vocabSize")});
  }
  explicit Tokenizer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tokenizer>(info) {}
  std::unique_ptr<wan::SentencePieceTokenizer> model;

 private:
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw makeError(env, "ERR_WAN_BAD_ARGUMENT", "encode(text): text must be a string");
    if (!model) throw makeError(env, "ERR_WAN_BAD_ARGUMENT", "a tokenizer comes only from loadSentencePiece()");
    std::string text = info[0].As<Napi::String>().Utf8Value();
    std::vector<int> ids = guarded(env, [&] { return model->encode(text); });
    Napi::Array out = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ids[i]));
    return out;
  }
  Napi::Value VocabSize(const Napi::CallbackInfo& info) {
    if (!model) throw makeError(info.Env(), "ERR_WAN_BAD_ARGUMENT", "a tokenizer comes only from loadSentencePiece()");
    return Napi::Number::New(info.Env(), model->vocabSize());
  }
};

struct AddonData {
  Napi::FunctionReference tokenizerClass;
};

Napi::Value LoadSentencePiece(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw makeError(env, "ERR_WAN_BAD_ARGUMENT", "loadSentencePiece(path): path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  auto model = guarded(env, [&] { return wan::SentencePieceTokenizer::load(path); });
  Napi::Object obj = env.GetInstanceData<AddonData>()->tokenizerClass.New({});
  Tokenizer::Unwrap(obj)->model = std::move(model);
  return obj;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->tokenizerClass = Napi::Persistent(Tokenizer::Define(env));
  env.SetInstanceData(data);
  exports.Set("loadSentencePiece", Napi::Function::New(env, LoadSentencePiece, "loadSentencePiece"));
  return exports;
}

}  // namespace

NODE_API_MODULE(wan_tokenizer, Init)
