// wan_run: runs one component of a Diffusers-layout folder on tensors read from a safetensors file
// and writes its output to another, so that a Python script can compare us with the reference on
// the same weights and inputs (bench/device/parity.py). Also checks the fused CUDA kernels against
// their at:: references.
//
//   wan_run dit  --model DIR --inputs IN.safetensors --out OUT.safetensors [--device cpu|cuda] [--dtype bfloat16]
//       IN: hidden_states [B, C, F, H, W], timestep [B] (or [B, seq]), encoder_hidden_states [B, L, D]
//       OUT: sample [B, C, F, H, W] float32
//   wan_run umt5 --model DIR --inputs IN.safetensors --out OUT.safetensors [--device ...] [--dtype ...]
//       IN: input_ids [B, L] int64, attention_mask [B, L]      OUT: last_hidden_state [B, L, d] float32
//   wan_run vae-decode --model VAE_DIR --inputs IN.safetensors --out OUT.safetensors [--device ...] [--dtype ...]
//            [--tiled 0|1 --tile-size 256 --tile-overlap 64] [--latents-tensor latents]
//       IN: latents [B, z, F', H', W'] (de-normalized, as AutoencoderKLWan.decode takes them; another
//           tensor name with --latents-tensor, e.g. a fixture's latents_denormalized)
//       OUT: sample [B, 3, F, H, W] float32, clamped to [-1, 1]
//   wan_run kernel-check [--device cuda] [--timing-tokens 75600]
//       fused LayerNorm + modulation vs its reference at the A14B / TI2V-5B widths and edge cases.
// Prints one JSON line (seconds for the call, or the kernel-check table); exit 1 on failure.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "core/device.h"
#include "core/errors.h"
#include "core/safetensors.h"
#include "core/tensor_io.h"
#include "kernels/modulation.h"
#include "models/umt5_encoder.h"
#include "models/wan_transformer.h"
#include "models/wan_vae.h"
#include "tool_support.h"

using namespace wan;
using namespace wan::tools;

namespace {

at::Tensor input(const TensorStore& store, const std::string& name) {
  auto entry = store.find(name);
  if (!entry) throw WanError(ErrorCode::BadArgument, "inputs file " + store.source() + " has no tensor '" + name + "'");
  return tensorView(*entry).clone();
}

int runDit(const Args& args, at::Device device, at::ScalarType dtype) {
  TensorStore in = TensorStore::openFile(args.required("inputs"));
  std::unique_ptr<WanTransformer> model;
  const Timing load = timeCalls(device, 0, 1, [&] { model = WanTransformer::load(args.required("model"), dtype, device); });
  at::Tensor hidden = input(in, "hidden_states"), timestep = input(in, "timestep"), context = input(in, "encoder_hidden_states");
  at::Tensor out;
  Timing t = timeCalls(device, 0, 1, [&] { out = model->forward(hidden, timestep, context); });
  writeSafetensors(args.required("out"), {{"sample", out.to(at::kFloat)}});
  std::cout << JsonObject().add("component", "dit").add("seconds", t.mean).add("load_seconds", load.mean).add("parameters", model->parameterCount()).str() << std::endl;
  return 0;
}

int runUmt5(const Args& args, at::Device device, at::ScalarType dtype) {
  TensorStore in = TensorStore::openFile(args.required("inputs"));
  std::unique_ptr<Umt5Encoder> encoder;
  const Timing load = timeCalls(device, 0, 1, [&] { encoder = Umt5Encoder::load(args.required("model"), dtype, device); });
  at::Tensor ids = input(in, "input_ids"), mask = input(in, "attention_mask");
  at::Tensor out;
  Timing t = timeCalls(device, 0, 1, [&] { out = encoder->encode(ids.to(device), mask.to(device)); });
  writeSafetensors(args.required("out"), {{"last_hidden_state", out.to(at::kFloat)}});
  std::cout << JsonObject().add("component", "umt5").add("seconds", t.mean).add("load_seconds", load.mean).add("parameters", encoder->parameterCount()).str() << std::endl;
  return 0;
}

int runVaeDecode(const Args& args, at::Device device, at::ScalarType dtype) {
  TensorStore in = TensorStore::openFile(args.required("inputs"));
  std::unique_ptr<WanVae> vae;
  const Timing load = timeCalls(device, 0, 1, [&] { vae = WanVae::load(args.required("model"), dtype, device); });
  at::Tensor latents = input(in, args.get("latents-tensor", "latents"));
  TilingOptions tiling;
  tiling.mode = args.integer("tiled", 0) ? TilingOptions::Mode::On : TilingOptions::Mode::Off;
  tiling.tileSize = args.integer("tile-size", tiling.tileSize), tiling.tileOverlap = args.integer("tile-overlap", tiling.tileOverlap);
  const bool tiles = vae->decodeTiles(latents.sizes().vec(), tiling);
  at::Tensor out;
  Timing t = timeCalls(device, 0, 1, [&] { out = vae->decode(latents, tiling); });
  writeSafetensors(args.required("out"), {{"sample", out.to(at::kFloat)}});
  std::cout << JsonObject().add("component", "vae-decode").add("version", vae->version()).add("tiled", tiles).add("seconds", t.mean).add("load_seconds", load.mean)
                   .add("parameters", vae->parameterCount()).str()
            << std::endl;
  return 0;
}

#ifdef WAN_WITH_CUDA
struct Compare {
  double relError = 0;  // max|a - b| / max|b|
  double cosine = 0;
};

Compare compare(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(at::kDouble).flatten(), y = b.to(at::kDouble).flatten();
  Compare c;
  c.relError = (x - y).abs().max().item<double>() / std::max(y.abs().max().item<double>(), 1e-30);
  c.cosine = (x * y).sum().item<double>() / std::max(x.norm().item<double>() * y.norm().item<double>(), 1e-30);
  return c;
}

int kernelCheck(const Args& args, at::Device device) {
  struct Case {
    std::string name;
    at::ScalarType dtype;
    int64_t batch, tokens, dim;
    bool perToken, misaligned;
  };
  const std::vector<Case> cases = {
      {"a14b bf16 broadcast", at::kBFloat16, 1, 4096, 5120, false, false},
      {"ti2v5b bf16 per-token", at::kBFloat16, 1, 4096, 3072, true, false},
      {"batch2 bf16", at::kBFloat16, 2, 1000, 5120, false, false},
      {"fp16", at::kHalf, 1, 2048, 5120, false, false},
      {"fp32", at::kFloat, 1, 2048, 5120, false, false},
      {"generic dim 1000", at::kBFloat16, 1, 777, 1000, false, false},
      {"generic dim 12288", at::kBFloat16, 1, 300, 12288, true, false},
      {"generic misaligned", at::kBFloat16, 1, 300, 5120, false, true},
  };
  bool ok = true;
  auto f32 = at::TensorOptions().device(device).dtype(at::kFloat);
  for (const Case& c : cases) {
    at::Tensor x = (at::randn({c.batch, c.tokens, c.dim}, f32) * 3 + 0.5).to(c.dtype);
    const int64_t modTokens = c.perToken ? c.tokens : 1;
    at::Tensor scale = at::randn({c.batch, modTokens, c.dim + (c.misaligned ? 1 : 0)}, f32) * 0.1;
    at::Tensor shift = at::randn({c.batch, modTokens, c.dim + (c.misaligned ? 1 : 0)}, f32) * 0.1;
    if (c.misaligned) scale = scale.narrow(2, 1, c.dim), shift = shift.narrow(2, 1, c.dim);
    if (!fusedLayerNormModulateApplies(x, scale, shift, c.dtype)) {
      std::cout << JsonObject().add("case", c.name).add("ok", false).add("error", "fused kernel does not apply").str() << std::endl;
      ok = false;
      continue;
    }
    at::Tensor fused = fusedLayerNormModulate(x, scale, shift, 1e-6);
    at::Tensor ref = layerNormModulateReference(x, scale, shift, 1e-6, c.dtype);
    const Compare cmp = compare(fused, ref);
    // One rounding step of the output dtype at the largest value (float32 math on both sides).
    const double tol = c.dtype == at::kFloat ? 1e-5 : c.dtype == at::kHalf ? 1e-3 : 8e-3;
    const bool pass = cmp.relError <= tol && cmp.cosine >= 0.99999;
    ok = ok && pass;
    std::cout << JsonObject().add("case", c.name).add("ok", pass).add("rel_error", cmp.relError).add("tolerance", tol).add("cosine", cmp.cosine).str()
              << std::endl;
  }

  // Speed at the A14B 720p shape: fused vs the unfused reference.
  const int64_t tokens = args.integer("timing-tokens", 75600), dim = 5120;
  at::Tensor x = at::randn({1, tokens, dim}, f32).to(at::kBFloat16);
  at::Tensor scale = at::randn({1, 1, dim}, f32) * 0.1, shift = at::randn({1, 1, dim}, f32) * 0.1;
  Timing fusedT = timeCalls(device, 2, 10, [&] { (void)fusedLayerNormModulate(x, scale, shift, 1e-6); });
  Timing refT = timeCalls(device, 2, 10, [&] { (void)layerNormModulateReference(x, scale, shift, 1e-6, at::kBFloat16); });
  const double bytes = 2.0 * tokens * dim * 2;  // read x once, write out once (bf16)
  std::cout << JsonObject()
                   .add("timing", "layer_norm_modulate bf16")
                   .add("tokens", tokens)
                   .add("dim", dim)
                   .add("fused_ms", fusedT.min * 1e3)
                   .add("reference_ms", refT.min * 1e3)
                   .add("speedup", refT.min / fusedT.min)
                   .add("fused_gb_per_s", bytes / fusedT.min / 1e9)
                   .str()
            << std::endl;
  std::cout << JsonObject().add("kernel_check", ok ? "pass" : "FAIL").str() << std::endl;
  return ok ? 0 : 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  try {
    Args args(argc, argv, {"help"});
    const std::string cmd = args.command();
    if (args.has("help") || cmd.empty()) {
      std::puts("usage: wan_run dit|umt5|vae-decode --model DIR --inputs IN.safetensors --out OUT.safetensors [--device cpu|cuda] [--dtype D]\n"
                "       wan_run kernel-check [--device cuda] [--timing-tokens 75600]");
      return cmd.empty() && !args.has("help") ? 2 : 0;
    }
    const at::Device device = parseDevice(args.get("device", "cpu"));
    const at::ScalarType dtype = parseDtype(args.get("dtype", device.is_cuda() ? "bfloat16" : "float32"));
    if (device.is_cpu()) configureThreads();
    setAllowTF32(false);  // parity runs (parity.py turns it off on the reference side too)
    c10::InferenceMode inference;
    at::manual_seed(0);
    if (cmd == "dit") return runDit(args, device, dtype);
    if (cmd == "umt5") return runUmt5(args, device, dtype);
    if (cmd == "vae-decode") return runVaeDecode(args, device, dtype);
    if (cmd == "kernel-check") {
#ifdef WAN_WITH_CUDA
      if (!device.is_cuda()) throw WanError(ErrorCode::BadArgument, "kernel-check needs --device cuda");
      return kernelCheck(args, device);
#else
      std::fprintf(stderr, "wan_run: kernel-check needs a CUDA build (this one is CPU-only)\n");
      return 2;
#endif
    }
    throw WanError(ErrorCode::BadArgument, "unknown command '" + cmd + "' (dit, umt5, vae-decode, kernel-check)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wan_run: %s\n", e.what());
    return 1;
  }
}
