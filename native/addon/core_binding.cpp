// JS entry points of the runtime core: runtimeInfo, readSafetensors, describeTensors,
// readModelConfig, randn, and test hooks (a long cancellable call, an error thrower, device/dtype
// parsing) that exercise the async/error plumbing.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <new>
#include <thread>
#include <type_traits>

#include "async_job.h"
#include "bindings.h"
#include "core/device.h"
#include "core/model_config.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/tensor_io.h"
#include "js_tensor.h"
#include "kernels/modulation.h"
#include "pipeline/video_frames.h"

#ifdef WAN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace wan::addon {

namespace {

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("libtorchVersion", TORCH_VERSION);
#ifdef WAN_WITH_CUDA
  o.Set("flavour", "cuda");
#else
  o.Set("flavour", "cpu");
#endif
  // libtorch's device queries, in Sync: a broken driver must give a coded error, not an abort.
  const int deviceCount = Sync(env, [] { return cudaDeviceCount(); });
  o.Set("cudaAvailable", Napi::Boolean::New(env, deviceCount > 0));
  if (deviceCount == 0) o.Set("cudaUnavailableReason", Sync(env, [] { return cudaUnavailableReason(); }));
  o.Set("fusedKernels", Napi::Boolean::New(env, fusedKernelsEnabled()));
  o.Set("cudaDeviceCount", Napi::Number::New(env, deviceCount));
  o.Set("threads", Napi::Number::New(env, at::get_num_threads()));
  Napi::Array devices = Napi::Array::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("type", "cpu");
  cpu.Set("name", "cpu");
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  cpu.Set("totalMemory", Napi::Number::New(env, static_cast<double>(pages) * static_cast<double>(pageSize)));
  devices.Set(0u, cpu);
  for (int i = 0; i < deviceCount; ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("type", "cuda");
    d.Set("name", "cuda:" + std::to_string(i));
    d.Set("index", Napi::Number::New(env, i));
#ifdef WAN_WITH_CUDA
    // The GPU's own name and memory, from the CUDA runtime libtorch itself links.
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) {
      d.Set("model", std::string(prop.name));
      d.Set("totalMemory", Napi::Number::New(env, static_cast<double>(prop.totalGlobalMem)));
      d.Set("computeCapability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
    }
#endif
    devices.Set(static_cast<uint32_t>(i + 1), d);
  }
  o.Set("devices", devices);
  return o;
}

// readSafetensors(path) -> Promise<{ metadata, tensors: { name: tensor } }>
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  auto file = std::make_shared<std::shared_ptr<SafetensorsFile>>();
  return AsyncJob::Start(
      info.Env(), [path, file](RunContext&) { *file = SafetensorsFile::open(path); },
      [path, file](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Object meta = Napi::Object::New(env);
        for (const auto& [k, v] : (*file)->metadata()) meta.Set(k, v);
        Napi::Object tensors = Napi::Object::New(env);
        for (const auto& t : (*file)->tensors()) {
          TensorStore::Entry e{*file, &t};
          tensors.Set(t.name, TensorToJs(env, tensorView(e)));
        }
        out.Set("metadata", meta);
        out.Set("tensors", tensors);
        return out;
      },
      info.Env().Undefined(), nullptr);
}

// describeTensors(pathOrFolder) -> Promise<{ source, totalBytes, tensors: [{ name, dtype, shape, file }] }>
// Header-only: reads names, dtypes and shapes of a file, a sharded folder (index.json) or a folder.
Napi::Value DescribeTensors(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  auto store = std::make_shared<TensorStore>();
  return AsyncJob::Start(
      info.Env(),
      [path, store](RunContext&) {
        std::error_code ec;
        *store = std::filesystem::is_directory(path, ec) ? TensorStore::openFolder(path)
                 : (path.size() > 11 && path.compare(path.size() - 11, 11, ".index.json") == 0) ? TensorStore::openIndex(path)
                                                                                                  : TensorStore::openFile(path);
      },
      [store](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("source", store->source());
        out.Set("totalBytes", Napi::Number::New(env, static_cast<double>(store->totalBytes())));
        Napi::Array list = Napi::Array::New(env);
        uint32_t i = 0;
        for (const auto& name : store->names()) {
          auto e = store->find(name);
          Napi::Object t = Napi::Object::New(env);
          t.Set("name", name);
          t.Set("dtype", dtypeName(e->info->dtype));
          Napi::Array shape = Napi::Array::New(env, e->info->shape.size());
          for (size_t d = 0; d < e->info->shape.size(); ++d) shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, static_cast<double>(e->info->shape[d])));
          t.Set("shape", shape);
          t.Set("file", e->file->path());
          list.Set(i++, t);
        }
        out.Set("tensors", list);
        return out;
      },
      info.Env().Undefined(), nullptr);
}

// A JS array of numbers, or of booleans for a std::vector<bool>.
template <typename T>
Napi::Array JsArray(Napi::Env env, const std::vector<T>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, bool>)
      a.Set(static_cast<uint32_t>(i), Napi::Boolean::New(env, v[i]));
    else
      a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  }
  return a;
}

// A component folder's config file, or the path itself when it is a file.
std::string ConfigFile(const std::string& path, const std::string& kind) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return path;
  const char* name = kind == "scheduler" ? "scheduler_config.json" : kind == "model_index" ? "model_index.json" : "config.json";
  return (std::filesystem::path(path) / name).string();
}

// readModelConfig(pathOrDir, kind) -> the typed config (model_config.h) as a plain object.
Napi::Value ReadModelConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  std::string kind = StringArg(info, 1, "kind");
  if (kind != "transformer" && kind != "text_encoder" && kind != "vae" && kind != "scheduler" && kind != "model_index")
    throw MakeError(env, ErrorCode::BadArgument, "argument 'kind' is '" + kind + "'; allowed: 'transformer', 'text_encoder', 'vae', 'scheduler', 'model_index'");
  std::string file = ConfigFile(path, kind);
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* key, double v) { o.Set(key, Napi::Number::New(env, v)); };
  if (kind == "transformer") {
    auto c = Sync(env, [&] { return readTransformerConfig(file); });
    num("inChannels", c.inChannels);
    num("outChannels", c.outChannels);
    num("numHeads", c.numHeads);
    num("headDim", c.headDim);
    num("numLayers", c.numLayers);
    num("ffnDim", c.ffnDim);
    num("freqDim", c.freqDim);
    num("textDim", c.textDim);
    num("ropeMaxSeqLen", c.ropeMaxSeqLen);
    o.Set("patchSize", JsArray(env, std::vector<int64_t>(c.patchSize.begin(), c.patchSize.end())));
    num("eps", c.eps);
    o.Set("crossAttnNorm", Napi::Boolean::New(env, c.crossAttnNorm));
    o.Set("qkNorm", c.qkNorm);
    num("dim", c.dim());
  } else if (kind == "text_encoder") {
    auto c = Sync(env, [&] { return readTextEncoderConfig(file); });
    num("dModel", c.dModel);
    num("dKv", c.dKv);
    num("dFf", c.dFf);
    num("numLayers", c.numLayers);
    num("numHeads", c.numHeads);
    num("vocabSize", c.vocabSize);
    num("relativeAttentionNumBuckets", c.relativeAttentionNumBuckets);
    num("relativeAttentionMaxDistance", c.relativeAttentionMaxDistance);
    num("eps", c.eps);
    o.Set("feedForwardProj", c.feedForwardProj);
  } else if (kind == "vae") {
    auto c = Sync(env, [&] { return readVaeConfig(file); });
    num("baseDim", c.baseDim);
    num("decoderBaseDim", c.decoderBaseDim);
    num("zDim", c.zDim);
    num("inChannels", c.inChannels);
    num("outChannels", c.outChannels);
    num("numResBlocks", c.numResBlocks);
    num("patchSize", c.patchSize);
    num("scaleFactorSpatial", c.scaleFactorSpatial);
    num("scaleFactorTemporal", c.scaleFactorTemporal);
    o.Set("dimMult", JsArray(env, c.dimMult));
    o.Set("temporalDownsample", JsArray(env, c.temporalDownsample));
    o.Set("attnScales", JsArray(env, c.attnScales));
    o.Set("isResidual", Napi::Boolean::New(env, c.isResidual));
    o.Set("latentsMean", JsArray(env, c.latentsMean));
    o.Set("latentsStd", JsArray(env, c.latentsStd));
  } else if (kind == "scheduler") {
    auto c = Sync(env, [&] { return readSchedulerConfig(file); });
    o.Set("className", c.className);
    num("numTrainTimesteps", c.numTrainTimesteps);
    num("solverOrder", c.solverOrder);
    num("stepsOffset", c.stepsOffset);
    o.Set("predictionType", c.predictionType);
    o.Set("solverType", c.solverType);
    o.Set("finalSigmasType", c.finalSigmasType);
    o.Set("timestepSpacing", c.timestepSpacing);
    o.Set("predictX0", Napi::Boolean::New(env, c.predictX0));
    o.Set("lowerOrderFinal", Napi::Boolean::New(env, c.lowerOrderFinal));
    o.Set("useFlowSigmas", Napi::Boolean::New(env, c.useFlowSigmas));
    o.Set("thresholding", Napi::Boolean::New(env, c.thresholding));
    o.Set("useKarrasSigmas", Napi::Boolean::New(env, c.useKarrasSigmas));
    o.Set("useExponentialSigmas", Napi::Boolean::New(env, c.useExponentialSigmas));
    o.Set("useBetaSigmas", Napi::Boolean::New(env, c.useBetaSigmas));
    o.Set("useDynamicShifting", Napi::Boolean::New(env, c.useDynamicShifting));
    num("flowShift", c.flowShift);
    o.Set("disableCorrector", JsArray(env, c.disableCorrector));
  } else {
    auto m = Sync(env, [&] { return readModelIndex(file); });
    o.Set("className", m.className);
    if (m.boundaryRatio) num("boundaryRatio", *m.boundaryRatio);
    o.Set("expandTimesteps", Napi::Boolean::New(env, m.expandTimesteps));
    o.Set("hasTransformer2", Napi::Boolean::New(env, m.hasTransformer2));
    o.Set("hasTokenizer", Napi::Boolean::New(env, m.hasTokenizer));
  }
  o.Set("file", file);
  return o;
}

// _testParseDevice(device, dtype?) -> { device, dtype }: the option parsing every loader uses.
Napi::Value TestParseDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string device = StringArg(info, 0, "device");
  std::string dtype = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "float32";
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", Sync(env, [&] { return parseDevice(device).str(); }));
  o.Set("dtype", Sync(env, [&] { return dtypeToName(parseDtype(dtype)); }));
  return o;
}

// setAllowTF32(allow): TF32 in float32 cuBLAS/cuDNN work, process-wide (off for parity runs).
Napi::Value SetAllowTF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw MakeError(env, ErrorCode::BadArgument, "setAllowTF32(allow: boolean)");
  const bool allow = info[0].As<Napi::Boolean>().Value();
  Sync(env, [&] {
    setAllowTF32(allow);
    return true;
  });
  return env.Undefined();
}

// randn(seed, shape) -> tensor: torch.manual_seed(seed); torch.randn(shape, float32)
Napi::Value Randn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArray())
    throw MakeError(env, ErrorCode::BadArgument, "randn(seed: number, shape: number[])");
  const uint64_t seed = SeedValue(env, info[0].As<Napi::Number>().DoubleValue());
  const std::vector<int64_t> shape = ShapeFromJs(info[1], "shape", nullptr);
  return Sync(env, [&] { return TensorToJs(env, randnLikeReference(seed, shape)); });
}

// _testLongCall(steps, msPerStep, token?, onProgress?) -> Promise<number of steps run>
Napi::Value TestLongCall(const Napi::CallbackInfo& info) {
  int64_t steps = info[0].As<Napi::Number>().Int64Value();
  int64_t ms = info[1].As<Napi::Number>().Int64Value();
  auto cancel = CancelToken::FromArg(info, 2);
  auto done = std::make_shared<int64_t>(0);
  return AsyncJob::Start(
      info.Env(),
      [steps, ms, done](RunContext& ctx) {
        auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < steps; ++i) {
          ctx.checkCancelled();
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
          ++*done;
          ProgressEvent e;
          e.stage = "test";
          e.step = i + 1;
          e.totalSteps = steps;
          e.elapsedMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
          ctx.progress(e);
        }
      },
      [done](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*done)); },
      info.Length() > 3 ? info[3] : info.Env().Undefined(), cancel);
}

// _testThrow(kind) -> Promise rejected as the engine would for that failure. 'result_oom': the work
// succeeds but its result cannot be built (a 1 PiB ArrayBuffer); the error must still be decorated
// (`decorated: true`, as the pipeline adds the saved latents) and be ERR_WAN_OOM.
Napi::Value TestThrow(const Napi::CallbackInfo& info) {
  std::string kind = StringArg(info, 0, "kind");
  if (kind == "result_oom") {
    return AsyncJob::Start(
        info.Env(), [](RunContext&) {},
        [](Napi::Env env) -> Napi::Value { return TensorToJs(env, at::zeros({1}).expand({int64_t(1) << 48})); },
        info.Env().Undefined(), nullptr, nullptr, [](Napi::Env env, Napi::Object error) { error.Set("decorated", Napi::Boolean::New(env, true)); });
  }
  return AsyncJob::Start(
      info.Env(),
      [kind](RunContext&) {
        // A real libtorch shape error (c10::Error; view's size check throws std::runtime_error on 1.13).
        if (kind == "c10") at::mm(at::ones({2, 3}), at::ones({2, 3}));
        if (kind == "bad_alloc") throw std::bad_alloc();
        if (kind == "oom") {
          // A real allocation failure of libtorch's CPU allocator.
          at::Tensor t = at::empty({int64_t(1) << 62}, at::kByte);
        }
        if (kind == "bad_argument") throwBadArgument("option 'x' is bad; allowed: 'y'");
        if (kind == "runtime") throw std::runtime_error("boom");
      },
      nullptr, info.Env().Undefined(), nullptr);
}

// _testToFrames(video, device?) -> uint8 [B, F, H, W, 3]: the pipeline's float video -> frames
// conversion (videoToFrames), run on `device` (default 'cpu').
Napi::Value TestToFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor video = TensorFromJs(info[0], "video");
  const std::string device = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
  return Sync(env, [&] { return TensorToJs(env, videoToFrames(video.to(parseDevice(device)))); });
}

}  // namespace

void RegisterCore(Napi::Env env, Napi::Object exports) {
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors, "readSafetensors"));
  exports.Set("describeTensors", Napi::Function::New(env, DescribeTensors, "describeTensors"));
  exports.Set("randn", Napi::Function::New(env, Randn, "randn"));
  exports.Set("setAllowTF32", Napi::Function::New(env, SetAllowTF32, "setAllowTF32"));
  exports.Set("_testLongCall", Napi::Function::New(env, TestLongCall, "_testLongCall"));
  exports.Set("readModelConfig", Napi::Function::New(env, ReadModelConfig, "readModelConfig"));
  exports.Set("_testThrow", Napi::Function::New(env, TestThrow, "_testThrow"));
  exports.Set("_testParseDevice", Napi::Function::New(env, TestParseDevice, "_testParseDevice"));
  exports.Set("_testToFrames", Napi::Function::New(env, TestToFrames, "_testToFrames"));
}

}  // namespace wan::addon
