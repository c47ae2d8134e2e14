// wan_bench: synthetic random-weight benchmark of the Wan components at their real configs (no Node).
//
//   wan_bench [--model small|a14b|ti2v5b] [--device cpu|cuda] [--dtype float32|bfloat16|float16]
//             [--frames N --height H --width W] [--steps N] [--layers N] [--text-len 512]
//             [--warmup 1] [--iters 2] [--skip text,dit,vae,rates] [--vae-dtype float32] [--vae-tiled] [--json]
//             [--offload model|sequential] [--sdpa-order cudnn,flash,efficient,math]
//   wan_bench --flops-only [--model ...] [--frames N --height H --width W] [--layers N] [--text-len 512]
//             (the counted FLOPs per component as one JSON line; no weights, nothing run)
//   wan_bench --pipeline --index MODEL_DIR [--model ...] [--offload none|model|sequential]
//             [--pipeline-steps 2] [--tiled-decode]      (see runPipeline)
//
// Measures a DiT step with classifier-free guidance (two batch-1 forwards; for ti2v5b with one timestep
// per token, as its pipeline calls it under expand_timesteps), a text encode, a VAE
// decode of the run's latents, the device's matrix and attention rates, and prints a table (or,
// with --json, one JSON line). With the rates it times self-attention at the DiT's shape with each
// SDPA backend first in turn (libtorch >= 2.6), to show which one --sdpa-order / WAN_SDPA_ORDER
// should put first on this GPU, and checks their outputs: every backend after the first that runs
// against that first one, and each against the float32 fallback (chunkedAttention) on the first and
// last query rows (max|d|/max|ref| and cosine; "attention_agreement_at_dit_shape"). With
// --sdpa-order the DiT step's output is compared the same way with a step in libtorch's default
// order ("dit_step_vs_default_order"): a faster order is only worth having if its output agrees.
//
// FLOPs are counted, not sampled (one multiply-add = 2 FLOPs; norms, RoPE, softmax, GELU, modulation
// and biases ignored), and match PyTorch's FLOP counter on the reference modules exactly
// (test/fixtures/flops/make.py, reference.json; --flops-only prints these counts without running):
//   DiT forward, T video tokens, L text tokens, d = dim, f = ffn_dim, N layers, F = freq_dim (256),
//   V timestep values (1; T for TI2V-5B, whose pipeline passes one timestep per token):
//     linears    = 2*T*(N*(4d^2 [self q,k,v,o] + 2d^2 [cross q,o] + 2df [FFN]) + patch_in*d [patch embedding]
//                       + d*patch_out [proj_out])
//                + 2*L*(N*2d^2 [cross k,v] + text_dim*d + d^2 [text embedder])
//                + 2*V*(F*d + d^2 [time embedder] + 6d^2 [time_proj])
//     attention  = 4*N*T^2*d [self: QK^T and PV] + 4*N*T*L*d [cross]   (the SDPA calls)
//   DiT step with CFG: two forwards.
//   UMT5 encode, L tokens, d = d_model, i = heads*d_kv, f = d_ff, N layers (the relative position
//   bias is a table lookup added to the scores: no FLOPs):
//     linears    = 2*L*N*(4*d*i + 3*d*f)      attention = 4*N*L^2*i
// The floor of a call is linears / (measured matmul rate) + attention / (measured attention rate);
// "of floor" is floor / measured time (1.0 = at the measured peak rates).
//
// VAE decode (a14b: the Wan2.1 VAE, ti2v5b: the Wan2.2 VAE, small: a tiny Wan2.1-style VAE) of
// random latents of the run's latent shape, whole frames ("untiled") when WanVae's estimate plus the
// weights fits the device's free memory, else (or also, with --vae-tiled) spatially tiled (256 px
// tiles, 64 px overlap; 64/16 for small), one timed decode after --warmup decodes of the first 2
// latent frames (the same cuDNN plans, kernels and caches as the whole decode: every latent frame
// after the first runs the same convolutions; reference_bench.py warms up the same way), in --vae-dtype
// (float32 by default, as the reference pipelines load the VAE and as
// bench/device/reference_bench.py --vae times it). FLOPs are not counted for the VAE (causal 3D
// convs, up-sampling and attention of varying widths per stage): its row reports time and memory
// only. The end-to-end estimate adds the untiled decode when it ran, else the tiled one.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "core/model_config.h"
#include "core/tensor_io.h"
#include "kernels/modulation.h"
#include "models/attention.h"
#include "models/umt5_encoder.h"
#include "models/wan_transformer.h"
#include "models/wan_vae.h"
#include "pipeline/wan_pipeline.h"
#include "tool_support.h"

using namespace wan;
using namespace wan::tools;

namespace {

struct BenchModel {
  std::string name;
  TransformerConfig dit;
  TextEncoderConfig text;
  VaeConfig vae;  // defaults: the Wan2.1 VAE
  int64_t vaeSpatial = 8, vaeTemporal = 4;
  int64_t tileSize = 256, tileOverlap = 64;
  int64_t frames = 81, height = 720, width = 1280, steps = 40;
  bool expandTimesteps = false;  // the pipeline passes one timestep per token (TI2V-5B's expand_timesteps)
};

BenchModel benchModel(const std::string& name) {
  BenchModel m;
  m.name = name;
  // TransformerConfig / TextEncoderConfig defaults are the A14B expert and umt5-xxl.
  if (name == "a14b") return m;
  if (name == "ti2v5b") {
    m.dit.numHeads = 24, m.dit.numLayers = 30, m.dit.ffnDim = 14336, m.dit.inChannels = 48, m.dit.outChannels = 48;
    m.vaeSpatial = 16;  // the Wan2.2 VAE (Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json)
    m.vae.baseDim = 160, m.vae.decoderBaseDim = 256, m.vae.zDim = 48, m.vae.isResidual = true;
    m.vae.patchSize = 2, m.vae.scaleFactorSpatial = 16, m.vae.inChannels = m.vae.outChannels = 12;
    m.frames = 121, m.height = 704, m.width = 1280, m.steps = 50;
    m.expandTimesteps = true;  // Wan-AI/Wan2.2-TI2V-5B-Diffusers model_index.json
    return m;
  }
  if (name == "small") {  // seconds on 2 CPU cores; same structure, tiny widths
    m.dit.numHeads = 4, m.dit.headDim = 32, m.dit.numLayers = 2, m.dit.ffnDim = 256, m.dit.textDim = 64;
    m.text.dModel = 64, m.text.dKv = 16, m.text.dFf = 128, m.text.numLayers = 2, m.text.numHeads = 4, m.text.vocabSize = 256;
    m.vae.baseDim = m.vae.decoderBaseDim = 16;
    m.frames = 9, m.height = 128, m.width = 128, m.steps = 40;
    m.tileSize = 64, m.tileOverlap = 16;
    return m;
  }
  throw WanError(ErrorCode::BadArgument, "--model must be small, a14b or ti2v5b; got '" + name + "'");
}

// RandomWeights' rule (N(0, 1/fan_in) matrices, ones for norms, zeros otherwise) drawn directly on
// the device in the target dtype: a 14B-parameter expert in ~a second instead of minutes of CPU randn.
class DeviceRandomWeights : public WeightSource {
 public:
  DeviceRandomWeights(at::ScalarType dtype, at::Device device) : dtype_(dtype), device_(device) {}
  bool has(const std::string&) const override { return true; }
  using WeightSource::get;
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    auto opts = at::TensorOptions().device(device_).dtype(dtype);
    if (shape.size() >= 2) {
      int64_t fanIn = 1;
      for (size_t i = 1; i < shape.size(); ++i) fanIn *= shape[i];
      return at::randn(shape, opts).mul_(1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fanIn, 1))));
    }
    return name.find("norm") != std::string::npos ? at::ones(shape, opts) : at::zeros(shape, opts);
  }
  void finish() const override {}
  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override { return device_; }

 private:
  at::ScalarType dtype_;
  at::Device device_;
};

std::unique_ptr<WeightSource> randomWeights(at::ScalarType dtype, at::Device device) {
  if (device.is_cpu()) return std::make_unique<RandomWeights>(1234, dtype, device);
  return std::make_unique<DeviceRandomWeights>(dtype, device);
}

struct Flops {
  double linear = 0, attention = 0;
  double total() const { return linear + attention; }
};

// One DiT forward (batch 1) by where its work is; see the header comment. Checked against PyTorch's
// FLOP counter on the reference modules (test/fixtures/flops/reference.json): equal, not close.
struct DitFlops {
  Flops blocks;  // N layers: the linears on the video and text tokens, and SDPA
  double patchEmbedding = 0, timeEmbedding = 0, textEmbedding = 0, projOut = 0;
  Flops forward() const { return {blocks.linear + patchEmbedding + timeEmbedding + textEmbedding + projOut, blocks.attention}; }
  // A step with CFG: two whole forwards (cond, uncond), the reference's work. forwardEach runs them
  // as two separate passes with resident weights (what the timed step uses); only where blocks are
  // streamed does one interleaved pass share the patch and time embeddings, which is not counted.
  Flops stepCfg() const {
    const Flops one = forward();
    return {2 * one.linear, 2 * one.attention};
  }
};

// timestepValues: 1 for one timestep per sample, `tokens` for a per-token timestep [1, tokens]
// (TI2V-5B's expand_timesteps, as the pipeline calls it): the time embedding then runs per token.
DitFlops ditForwardFlops(const TransformerConfig& c, int64_t tokens, int64_t textLen, int64_t timestepValues) {
  const double d = static_cast<double>(c.dim()), f = static_cast<double>(c.ffnDim), n = static_cast<double>(c.numLayers);
  const double t = static_cast<double>(tokens), l = static_cast<double>(textLen), v = static_cast<double>(timestepValues);
  const double patch = static_cast<double>(c.patchSize[0] * c.patchSize[1] * c.patchSize[2]);
  DitFlops fl;
  fl.blocks.linear = 2 * t * n * (4 * d * d + 2 * d * d + 2 * d * f) + 2 * l * n * 2 * d * d;
  fl.blocks.attention = 4 * n * t * t * d + 4 * n * t * l * d;
  fl.patchEmbedding = 2 * t * static_cast<double>(c.inChannels) * patch * d;
  fl.timeEmbedding = 2 * v * (static_cast<double>(c.freqDim) * d + d * d + 6 * d * d);
  fl.textEmbedding = 2 * l * (static_cast<double>(c.textDim) * d + d * d);
  fl.projOut = 2 * t * d * static_cast<double>(c.outChannels) * patch;
  return fl;
}

Flops textEncodeFlops(const TextEncoderConfig& c, int64_t len) {
  const double d = static_cast<double>(c.dModel), i = static_cast<double>(c.numHeads * c.dKv), f = static_cast<double>(c.dFf);
  const double n = static_cast<double>(c.numLayers), l = static_cast<double>(len);
  Flops fl;
  fl.linear = 2 * l * n * (4 * d * i + 3 * d * f);
  fl.attention = 4 * n * l * l * i;
  return fl;
}

// The counts are whole numbers, printed as integers: exact in a double per forward (below 2^53); a
// 720p CFG step's total (~1.3e16) may be off by a unit of its last place (2 FLOPs).
int64_t whole(double flops) { return static_cast<int64_t>(std::llround(flops)); }

JsonObject flopsJson(const Flops& f) {
  JsonObject j;
  j.add("linear", whole(f.linear)).add("attention", whole(f.attention)).add("total", whole(f.total()));
  return j;
}

// Random q, k, v [1, heads, tokens, headDim] laid out as the DiT passes them to SDPA: [B, S, H, D]
// memory viewed as [B, H, S, D]. Backend choice and speed depend on the strides, so timing another
// layout would time a kernel the DiT does not run.
std::array<at::Tensor, 3> ditLayoutQkv(const at::TensorOptions& opts, int64_t heads, int64_t tokens, int64_t headDim) {
  auto one = [&] { return at::randn({1, tokens, heads, headDim}, opts).transpose(1, 2); };
  return {one(), one(), one()};
}

// Measured peak rates (FLOP/s) of a square matmul and of the attention entry point the models use.
struct Rates {
  double matmul = 0, attention = 0;
  std::string attentionBackend = "unknown";
};

Rates measureRates(at::Device device, at::ScalarType dtype, int64_t headDim, int warmup, int iters) {
  Rates r;
  const bool gpu = device.is_cuda();
  const int64_t n = gpu ? 8192 : 512;
  auto opts = at::TensorOptions().device(device).dtype(dtype);
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
  Timing mm = timeCalls(device, warmup, std::max(iters, 5), [&] { (void)at::matmul(a, b); });
  r.matmul = 2.0 * n * n * n / mm.min;

  const int64_t heads = gpu ? 40 : 4, seq = gpu ? 16384 : 512;
  const auto [q, k, v] = ditLayoutQkv(opts, heads, seq, headDim);
  Timing at_ = timeCalls(device, warmup, std::max(iters, 3), [&] { (void)wan::attention(q, k, v); });
  r.attention = 4.0 * heads * seq * seq * headDim / at_.min;
  r.attentionBackend = attentionBackendFor(q, k, v);
  return r;
}

// How far `out` is from `ref` (same shape): max|out - ref| / max|ref| and the cosine similarity, in
// float32 with double sums (NaN where either has a non-finite value).
struct Agreement {
  double maxRel = NAN, cosine = NAN;
  bool finite = false;
  JsonObject json() const {
    JsonObject j;
    j.add("max_rel", maxRel).add("cosine", cosine).add("finite", finite);
    return j;
  }
};

Agreement agreement(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor x = out.to(at::kFloat), y = ref.to(at::kFloat);
  Agreement a;
  a.finite = at::isfinite(x).all().item<bool>() && at::isfinite(y).all().item<bool>();
  a.maxRel = (x - y).abs().max().item<double>() / std::max(y.abs().max().item<double>(), 1e-30);
  const double xy = (x * y).sum(at::kDouble).item<double>();
  const double xx = (x * x).sum(at::kDouble).item<double>(), yy = (y * y).sum(at::kDouble).item<double>();
  a.cosine = xy / std::max(std::sqrt(xx) * std::sqrt(yy), 1e-300);
  if (!a.finite) a.maxRel = a.cosine = NAN;
  return a;
}

// Self-attention at the DiT's shape with each fused backend put first in turn (the order given by
// --sdpa-order is put back after): TFLOP/s of each backend that takes the input, NaN (JSON null)
// for one the input falls through or that fails on it (its error goes to stderr). Empty where
// libtorch cannot order its backends (< 2.6). Math is
// left out: never the fast one, and at 720p its score matrix alone would not fit.
//
// Each backend's output is checked too (a fast kernel is no use if it is wrong: at 75,600 tokens,
// not a multiple of 128, a kernel's tail handling is exercised): the first backend that runs is the
// reference for the others, and every one is compared with the float32 fallback on the first and
// last `checkRows` query rows against all keys (both ends of the sequence: a key-padding fault
// shows in every row, a query-tail fault in the last ones).
struct AttentionByBackend {
  std::vector<std::pair<std::string, double>> rates;
  std::string reference;                                   // the first backend that ran
  std::vector<std::pair<std::string, Agreement>> vsReference, vsFloat32;
  int64_t checkRows = 0;                                   // query rows at each end in vsFloat32
};

AttentionByBackend attentionByBackend(at::Device device, at::ScalarType dtype, int64_t heads, int64_t tokens, int64_t headDim, int warmup,
                                      int iters, const std::string& order) {
  AttentionByBackend r;
  const auto [q, k, v] = ditLayoutQkv(at::TensorOptions().device(device).dtype(dtype), heads, tokens, headDim);
  r.checkRows = std::min<int64_t>(512, tokens / 2);
  at::Tensor exact;  // the float32 fallback on the checked rows, computed once
  auto ends = [&](const at::Tensor& t) {
    return at::cat({t.narrow(2, 0, r.checkRows), t.narrow(2, tokens - r.checkRows, r.checkRows)}, 2);
  };
  at::Tensor first;
  for (const std::string name : {"cudnn_attention", "flash_attention", "efficient_attention"}) {
    if (!setAttentionBackendOrder(name)) break;
    if (attentionBackendFor(q, k, v) != name) {
      r.rates.emplace_back(name, NAN);
      continue;
    }
    at::Tensor out;
    try {
      Timing t = timeCalls(device, warmup, std::max(iters, 1), [&] { out = wan::attention(q, k, v); });  // the last one is checked
      r.rates.emplace_back(name, 4.0 * heads * tokens * tokens * headDim / t.min);
    } catch (const std::exception& e) {  // chosen but failed (a kernel's own limits): the others still count
      std::fprintf(stderr, "wan_bench: %s at the DiT shape failed: %s\n", name.c_str(), e.what());
      r.rates.emplace_back(name, NAN);
      continue;
    }
    if (!first.defined()) {
      first = out, r.reference = name;
    } else {
      r.vsReference.emplace_back(name, agreement(out, first));
    }
    if (r.checkRows > 0) {
      if (!exact.defined()) exact = chunkedAttention(ends(q).to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), 128);
      r.vsFloat32.emplace_back(name, agreement(ends(out), exact));
    }
  }
  setAttentionBackendOrder(order);
  return r;
}

// A whole generation through WanPipeline (--pipeline): the model folder's model_index.json and
// scheduler config (--index, e.g. a tiny fixture of the same family) with every component built at
// `m`'s real sizes from random weights, random prompt embeddings, `steps` denoise steps with CFG and
// the decode. Measures what the per-component rows cannot: the peak of the pipeline as it really
// runs in an offload mode (both A14B experts resident with 'none', one at a time with 'model'), and
// the time per step and of the decode inside it. The text encoder is not run (prompt embeddings are
// given; its time is the text_encode row), so it is built with one layer and a tiny vocabulary.
JsonObject runPipeline(const BenchModel& m, const std::string& indexDir, at::Device device, at::ScalarType dtype,
                       at::ScalarType vaeDtype, const std::string& offload, int64_t steps, bool tiledDecode) {
  PipelineOptions options;
  options.device = device, options.dtype = dtype, options.vaeDtype = vaeDtype, options.offload = offload;
  ComponentBuilders builders;
  builders.textEncoder = [&](const std::string&, at::ScalarType type, at::Device where, const RunContext*) {
    TextEncoderConfig text = m.text;
    text.numLayers = 1, text.vocabSize = 256;
    RandomWeights weights(1234, type, where);
    return std::make_unique<Umt5Encoder>(text, weights);
  };
  builders.transformer = [&](const std::string&, at::ScalarType type, at::Device, const RunContext*) {
    // Drawn on the compute device (seconds, not CPU minutes) and left there even when the pipeline
    // keeps experts in host memory: its offload placement then copies each weight into the pinned
    // arena straight from the device, without a pageable host copy of the whole expert first.
    return std::make_unique<WanTransformer>(m.dit, *randomWeights(type, device));
  };
  builders.vae = [&](const std::string&, at::ScalarType type, at::Device where, const RunContext*) {
    return std::make_unique<WanVae>(m.vae, *randomWeights(type, where));
  };

  PeakMemoryMeter meter(device);
  std::vector<double> stepEndsMs;  // elapsed at each denoise step's end
  double doneMs = NAN;
  // Progress events are stamped when the host queues the work; synchronizing in the callback makes
  // each stamp the device's own end of the step (one sync per step costs nothing at these sizes).
  std::chrono::steady_clock::time_point start;  // set when generate() starts
  auto deviceMs = [&] {
    synchronize(device);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  RunContext ctx(
      [&](const ProgressEvent& e) {
        if (e.stage == "denoise") stepEndsMs.push_back(deviceMs());
        if (e.stage == "done") doneMs = deviceMs();
      },
      nullptr);
  const auto loadStart = std::chrono::steady_clock::now();
  auto pipeline = WanPipeline::load(indexDir, options, RunContext(), builders);
  synchronize(device);
  const double loadSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - loadStart).count();
  // The generation's peak: building random experts on the device leaves cached blocks that a load
  // from a checkpoint (to host memory, with offload) would not.
  meter.reset();

  GenerateRequest request;
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  request.promptEmbeds = at::randn({1, 512, m.dit.textDim}, f32);
  request.negativeEmbeds = at::randn({1, 512, m.dit.textDim}, f32);
  request.width = m.width, request.height = m.height, request.numFrames = m.frames, request.steps = steps;
  request.guidanceScale = 5.0;
  request.tiledDecode = tiledDecode, request.autoTiledDecode = !tiledDecode;
  request.returnFloat = true;  // for video_finite (the frames map NaN to 0); the frames are made all the same
  start = std::chrono::steady_clock::now();
  GenerateResult result = pipeline->generate(request, ctx);
  synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const PeakMemory peak = meter.read();

  // Step i's time is the gap between progress events; the first step also pays warm-up.
  std::vector<double> stepSeconds;
  for (size_t i = 1; i < stepEndsMs.size(); ++i) stepSeconds.push_back((stepEndsMs[i] - stepEndsMs[i - 1]) / 1000);
  const double stepMin = stepSeconds.empty() ? (stepEndsMs.empty() ? NAN : stepEndsMs[0] / 1000)
                                             : *std::min_element(stepSeconds.begin(), stepSeconds.end());
  JsonObject j;
  j.add("offload", offload).add("steps", steps).add("tiled_decode", tiledDecode).add("load_seconds", loadSeconds);
  j.add("seconds", seconds).add("denoise_step_seconds_min", stepMin);
  // From the last step's end to the end: the expert's release, the VAE's visit and the decode.
  j.add("decode_seconds", stepEndsMs.empty() ? NAN : (doneMs - stepEndsMs.back()) / 1000);
  j.add("peak_bytes", peak.bytes).add("peak_kind", peak.kind);
  if (peak.allocatedBytes) j.add("peak_allocated_bytes", peak.allocatedBytes);
  j.add("resident_weight_bytes", pipeline->residentWeightBytes());
  j.add("video_frames", result.video.defined() ? result.video.size(2) : int64_t{0});
  j.add("video_finite", result.video.defined() && at::isfinite(result.video).all().item<bool>());
  return j;
}

std::string human(double v, const char* unit) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g %s", v, unit);
  return buf;
}

struct ComponentResult {
  std::string name;
  Timing timing;        // seconds per call (a DiT "call" is one CFG step = two forwards)
  Flops flops;          // per call
  PeakMemory peak;
  int64_t weightBytes = 0;
  double floorSeconds = 0;
  JsonObject json() const {
    JsonObject j;
    j.add("seconds", timing.mean).add("seconds_min", timing.min).add("iters", timing.iters);
    j.add("flops", whole(flops.total())).add("flops_linear", whole(flops.linear)).add("flops_attention", whole(flops.attention));
    j.add("tflops", flops.total() / timing.min / 1e12);
    j.add("peak_bytes", peak.bytes).add("peak_kind", peak.kind);
    if (peak.allocatedBytes) j.add("peak_allocated_bytes", peak.allocatedBytes);
    j.add("weight_bytes", weightBytes);
    j.add("floor_seconds", floorSeconds).add("fraction_of_floor", floorSeconds / timing.min);
    return j;
  }
};

double floorOf(const Flops& f, const Rates& r) { return f.linear / r.matmul + f.attention / r.attention; }

// One VAE decode, whole frames or tiled: time and peak memory (no FLOPs; see the header comment).
struct VaeDecodeResult {
  bool ran = false;
  Timing timing;
  PeakMemory peak;
  int64_t estimateBytes = 0;
  JsonObject json() const {
    JsonObject j;
    j.add("seconds", timing.mean).add("seconds_min", timing.min).add("iters", timing.iters);
    j.add("peak_bytes", peak.bytes).add("peak_kind", peak.kind).add("estimate_bytes", estimateBytes);
    if (peak.allocatedBytes) j.add("peak_allocated_bytes", peak.allocatedBytes);
    return j;
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    Args args(argc, argv, {"json", "help", "pipeline", "tiled-decode", "vae-tiled", "flops-only"});
    if (args.has("help")) {
      std::puts("usage: wan_bench [--model small|a14b|ti2v5b] [--device cpu|cuda] [--dtype float32|bfloat16|float16]\n"
                "                 [--frames N --height H --width W] [--steps N] [--layers N] [--text-len 512]\n"
                "                 [--warmup 1] [--iters 2] [--skip text,dit,vae,rates] [--vae-dtype float32] [--vae-tiled] [--json]\n"
                "                 [--offload model|sequential]  (also time the DiT step in that placement)\n"
                "                 [--sdpa-order cudnn,flash,efficient,math]  (the SDPA backends tried first; libtorch >= 2.6)\n"
                "                 [--flops-only]  (print the counted FLOPs as one JSON line; allocates and runs nothing)\n"
                "       wan_bench --pipeline --index MODEL_DIR [--model ...] [--offload none|model|sequential]\n"
                "                 [--pipeline-steps 2] [--tiled-decode]  (a whole generation with random weights: its peak)");
      return 0;
    }
    BenchModel m = benchModel(args.get("model", "small"));
    const at::Device device = parseDevice(args.get("device", "cpu"));
    const at::ScalarType dtype = parseDtype(args.get("dtype", device.is_cuda() ? "bfloat16" : "float32"));
    if (device.is_cpu()) configureThreads();
    m.frames = args.integer("frames", m.frames), m.height = args.integer("height", m.height), m.width = args.integer("width", m.width);
    m.steps = args.integer("steps", m.steps);
    m.dit.numLayers = args.integer("layers", m.dit.numLayers);
    const int64_t textLen = args.integer("text-len", 512);
    const int warmup = static_cast<int>(args.integer("warmup", 1)), iters = static_cast<int>(args.integer("iters", 2));
    m.vae.latentsMean.assign(m.vae.zDim, 0.0);  // timing does not depend on the latent statistics
    m.vae.latentsStd.assign(m.vae.zDim, 1.0);
    const std::string skip = "," + args.get("skip", "") + ",";
    const bool json = args.has("json");
    const at::ScalarType vaeDtype = parseDtype(args.get("vae-dtype", "float32"));
    const std::string offload = args.get("offload", "none");
    if (offload != "none" && offload != "model" && offload != "sequential")
      throw WanError(ErrorCode::BadArgument, "--offload must be none, model or sequential; got '" + offload + "'");
    c10::InferenceMode inference;
    at::manual_seed(0);

    if (args.has("pipeline")) {
      const bool tiled = args.has("tiled-decode");
      JsonObject j = runPipeline(m, args.required("index"), device, dtype, vaeDtype, offload, args.integer("pipeline-steps", 2), tiled);
      JsonObject out;
      out.add("tool", "wan_bench").add("model", m.name).add("device", device.str()).add("dtype", dtypeToName(dtype));
      out.add("torch", torchVersion()).add("frames", m.frames).add("height", m.height).add("width", m.width);
      out.add("pipeline", j);
      std::cout << out.str() << std::endl;  // one JSON line, with or without --json
      return 0;
    }

    const auto [pt, ph, pw] = m.dit.patchSize;
    const int64_t latentFrames = (m.frames - 1) / m.vaeTemporal + 1;
    const int64_t latentH = m.height / m.vaeSpatial, latentW = m.width / m.vaeSpatial;
    if (latentH % ph || latentW % pw || latentFrames % pt)
      throw WanError(ErrorCode::BadArgument, "height and width must be multiples of " + std::to_string(m.vaeSpatial * ph));
    const int64_t tokens = (latentFrames / pt) * (latentH / ph) * (latentW / pw);
    // As the pipeline calls the DiT: one timestep, or (expand_timesteps) one per token.
    const int64_t timestepValues = m.expandTimesteps ? tokens : 1;

    if (args.has("flops-only")) {
      // The counts the timed run would report, by component, for this --model / size / --layers /
      // --text-len: no weights, no tensors (test/bench.test.ts checks them against reference.json).
      const DitFlops d = ditForwardFlops(m.dit, tokens, textLen, timestepValues);
      JsonObject forward = flopsJson(d.forward());
      forward.add("blocks", flopsJson(d.blocks)).add("patch_embedding", whole(d.patchEmbedding)).add("time_embedding", whole(d.timeEmbedding));
      forward.add("text_embedding", whole(d.textEmbedding)).add("proj_out", whole(d.projOut));
      JsonObject j;
      j.add("tool", "wan_bench").add("model", m.name).add("frames", m.frames).add("height", m.height).add("width", m.width);
      j.add("latent_frames", latentFrames).add("latent_height", latentH).add("latent_width", latentW);
      j.add("tokens", tokens).add("text_len", textLen).add("layers", m.dit.numLayers).add("dim", m.dit.dim());
      j.add("timestep_values", timestepValues);
      j.add("dit_forward", forward).add("dit_step", flopsJson(d.stepCfg())).add("text_encode", flopsJson(textEncodeFlops(m.text, textLen)));
      std::cout << j.str() << std::endl;
      return 0;
    }
    const int64_t elemBytes = static_cast<int64_t>(at::elementSize(dtype));

    // --sdpa-order cudnn,flash: the backends at::scaled_dot_product_attention tries first (see
    // models/attention.h); the default is libtorch's order.
    const std::string sdpaOrder = args.get("sdpa-order");
    const bool sdpaOrderApplied = !sdpaOrder.empty() && setAttentionBackendOrder(sdpaOrder);

    Rates rates;
    AttentionByBackend attentionAtDitShape;
    if (skip.find(",rates,") == std::string::npos) {
      rates = measureRates(device, dtype, m.dit.headDim, warmup, iters);
      attentionAtDitShape = attentionByBackend(device, dtype, m.dit.numHeads, tokens, m.dit.headDim, warmup, iters, sdpaOrder);
    }
    PeakMemoryMeter meter(device);

    // ---- text encode
    ComponentResult text;
    text.name = "text_encode";
    bool haveText = false;
    if (skip.find(",text,") == std::string::npos) {
      meter.reset();
      auto weights = randomWeights(dtype, device);
      Umt5Encoder encoder(m.text, *weights);
      text.weightBytes = encoder.parameterCount() * elemBytes;
      at::Tensor ids = at::randint(m.text.vocabSize, {1, textLen}, at::TensorOptions().dtype(at::kLong).device(device));
      at::Tensor mask = at::ones({1, textLen}, at::TensorOptions().dtype(at::kLong).device(device));
      text.timing = timeCalls(device, warmup, iters, [&] { (void)encoder.encode(ids, mask); });
      text.flops = textEncodeFlops(m.text, textLen);
      text.peak = meter.read();
      haveText = true;
    }

    // ---- DiT step with CFG: cond and uncond as two batch-1 forwards of the same expert (forwardEach,
    // as the pipeline calls it)
    ComponentResult dit;
    dit.name = "dit_step_cfg";
    bool haveDit = false;
    // --offload: the same step with the weights in host memory. 'model': each timed call uploads the
    // whole expert, runs the step and drops the copy (a step that pays a full swap); 'sequential':
    // blocks streamed with prefetch. Its output must equal the resident one bit for bit.
    ComponentResult ditOffload;
    ditOffload.name = "dit_" + offload;
    bool offloadMatches = false;
    int64_t offloadUploadBytes = 0;  // bytes uploaded per timed step
    std::string sdpaAtShape = "not measured";
    Agreement vsDefaultOrder;  // --sdpa-order: the step's output against libtorch's default order
    bool haveVsDefaultOrder = false;
    std::string defaultPriority;
    if (skip.find(",dit,") == std::string::npos) {
      meter.reset();
      auto weights = randomWeights(dtype, device);
      WanTransformer model(m.dit, *weights);
      weights.reset();
      dit.weightBytes = model.parameterCount() * elemBytes;
      auto f32 = at::TensorOptions().device(device).dtype(at::kFloat);
      at::Tensor latents = at::randn({1, m.dit.inChannels, latentFrames, latentH, latentW}, f32);
      at::Tensor timestep = m.expandTimesteps ? at::full({1, timestepValues}, 500.0, f32) : at::full({1}, 500.0, f32);
      at::Tensor cond = at::randn({1, textLen, m.dit.textDim}, f32), uncond = at::randn({1, textLen, m.dit.textDim}, f32);
      at::Tensor lastCond;  // the cond pass of the last timed step (kept: no extra forward for the check below)
      dit.timing = timeCalls(device, warmup, iters, [&] { lastCond = model.forwardEach(latents, timestep, {cond, uncond})[0]; });
      dit.flops = ditForwardFlops(m.dit, tokens, textLen, timestepValues).stepCfg();
      dit.peak = meter.read();
      haveDit = true;
      if (sdpaOrderApplied && lastCond.defined()) {
        // The same cond pass in libtorch's default order (empty: libtorch's own list), then the asked
        // order back: does the faster order compute the same thing?
        setAttentionBackendOrder(std::string());
        for (const std::string& name : attentionBackendOrder()) defaultPriority += (defaultPriority.empty() ? "" : ",") + name;
        const at::Tensor inDefaultOrder = model.forward(latents, timestep, cond);
        setAttentionBackendOrder(sdpaOrder);
        vsDefaultOrder = agreement(lastCond, inDefaultOrder);
        haveVsDefaultOrder = true;
      }
      if (offload != "none") {
        const at::Tensor resident = model.forward(latents, timestep, cond);
        const bool swap = offload == "model";
        if (swap) model.offload(device);
        else model.streamBlocks(device);
        meter.reset();
        const int64_t uploadedBefore = model.uploadedBytes();
        int64_t calls = 0;
        ditOffload.timing = timeCalls(device, warmup, iters, [&] {
          if (swap) model.upload();
          (void)model.forwardEach(latents, timestep, {cond, uncond});
          if (swap) model.release();
          ++calls;
        });
        offloadUploadBytes = (model.uploadedBytes() - uploadedBefore) / std::max<int64_t>(calls, 1);
        ditOffload.peak = meter.read();
        ditOffload.flops = dit.flops;
        ditOffload.weightBytes = model.deviceWeightBytes();
        if (swap) model.upload();
        offloadMatches = at::equal(model.forward(latents, timestep, cond), resident);
        if (swap) model.release();
      }
      if (device.is_cuda()) {
        const auto [q, k, v] = ditLayoutQkv(at::TensorOptions().device(device).dtype(dtype), m.dit.numHeads, tokens, m.dit.headDim);
        sdpaAtShape = attentionBackendFor(q, k, v);
      }
    }

    // The order libtorch tried its SDPA backends in (after its own first CUDA choice, see attention.h).
    std::string sdpaPriority;
    for (const std::string& name : attentionBackendOrder()) sdpaPriority += (sdpaPriority.empty() ? "" : ",") + name;
    if (sdpaPriority.empty()) sdpaPriority = "not orderable (libtorch < 2.6)";

    // ---- VAE decode of random latents of the run's shape, untiled when it fits, and tiled
    VaeDecodeResult vaeUntiled, vaeTiled;
    int64_t vaeWeightBytes = 0, vaeFreeBytes = 0;
    bool vaeSplits = false;  // whether the tiled run really splits frames (not when one tile covers them)
    bool haveVae = false;
    if (skip.find(",vae,") == std::string::npos) {
      auto weights = randomWeights(vaeDtype, device);
      WanVae vae(m.vae, *weights);
      weights.reset();
      vaeWeightBytes = vae.parameterCount() * static_cast<int64_t>(at::elementSize(vaeDtype));
      const std::vector<int64_t> shape{1, m.vae.zDim, latentFrames, latentH, latentW};
      at::Tensor latents = at::randn(shape, at::TensorOptions().device(device).dtype(at::kFloat));
      TilingOptions off, on;
      on.mode = TilingOptions::Mode::On, on.tileSize = m.tileSize, on.tileOverlap = m.tileOverlap;
      vaeFreeBytes = freeDeviceBytes(device);
      vaeUntiled.estimateBytes = vae.estimateDecodeBytes(shape, false, off);
      vaeSplits = vae.decodeTiles(shape, on);
      vaeTiled.estimateBytes = vae.estimateDecodeBytes(shape, vaeSplits, on);
      // One timed decode: at the real sizes a decode costs up to ~2 PFLOP of float32 convolutions,
      // and a device call has 600 s for every benchmark in it. The warm-up decodes the first 2 latent
      // frames only (the first frame's path and the cached path every later frame takes: all the
      // convolution shapes of the whole decode), as reference_bench.py does on its side.
      const at::Tensor warmupLatents = latents.narrow(2, 0, std::min<int64_t>(2, latentFrames));
      auto measure = [&](VaeDecodeResult& r, const TilingOptions& t) {
        meter.reset();
        for (int i = 0; i < warmup; ++i) (void)vae.decode(warmupLatents, t);
        r.timing = timeCalls(device, 0, 1, [&] { (void)vae.decode(latents, t); });
        r.peak = meter.read();
        r.ran = true;
      };
      if (vaeUntiled.estimateBytes <= vaeFreeBytes) measure(vaeUntiled, off);
      // Tiled too only where whole frames do not fit or --vae-tiled asks (the pipeline phase times
      // TI2V-5B's tiled decode in a whole generation).
      if (!vaeUntiled.ran || args.has("vae-tiled")) measure(vaeTiled, on);
      haveVae = true;
    }
    const double vaeSeconds = !haveVae ? 0 : vaeUntiled.ran ? vaeUntiled.timing.min : vaeTiled.timing.min;

    const bool haveRates = rates.matmul > 0;
    if (haveRates) {
      text.floorSeconds = floorOf(text.flops, rates);
      dit.floorSeconds = floorOf(dit.flops, rates);
      ditOffload.floorSeconds = dit.floorSeconds;
    }
    const double endToEnd = (haveText ? text.timing.min : 0) + m.steps * (haveDit ? dit.timing.min : 0) + vaeSeconds;

    if (json) {
      JsonObject j;
      j.add("tool", "wan_bench").add("model", m.name).add("device", device.str()).add("dtype", dtypeToName(dtype));
      j.add("torch", torchVersion()).add("threads", static_cast<int64_t>(at::get_num_threads()));
      j.add("frames", m.frames).add("height", m.height).add("width", m.width).add("tokens", tokens).add("text_len", textLen);
      j.add("layers", m.dit.numLayers).add("dim", m.dit.dim()).add("steps", m.steps);
      if (haveRates) {
        JsonObject r;
        r.add("matmul_tflops", rates.matmul / 1e12).add("attention_tflops", rates.attention / 1e12).add("attention_backend", rates.attentionBackend);
        j.add("rates", r);
      }
      j.add("sdpa_backend_at_dit_shape", sdpaAtShape);
      j.add("sdpa_order", sdpaOrder.empty() ? std::string("default") : sdpaOrder).add("sdpa_order_applied", sdpaOrderApplied);
      j.add("sdpa_priority", sdpaPriority);
      j.add("fused_kernels", fusedKernelsEnabled());
      JsonObject byBackend;
      for (const auto& [name, rate] : attentionAtDitShape.rates) byBackend.add(name, rate / 1e12);
      j.add("attention_tflops_at_dit_shape", byBackend);
      if (!attentionAtDitShape.reference.empty()) {
        JsonObject agree, vsRef, vsF32;
        for (const auto& [name, a] : attentionAtDitShape.vsReference) vsRef.add(name, a.json());
        for (const auto& [name, a] : attentionAtDitShape.vsFloat32) vsF32.add(name, a.json());
        agree.add("reference", attentionAtDitShape.reference).add("vs_reference", vsRef);
        agree.add("float32_rows", 2 * attentionAtDitShape.checkRows).add("vs_float32", vsF32);
        j.add("attention_agreement_at_dit_shape", agree);
      }
      if (haveVsDefaultOrder) j.add("dit_step_vs_default_order", vsDefaultOrder.json().add("default_priority", defaultPriority));
      if (haveText) j.add("text_encode", text.json());
      if (haveDit) j.add("dit_step", dit.json());
      if (haveDit && offload != "none") j.add("dit_step_offload", ditOffload.json().add("offload", offload).add("matches_resident", offloadMatches).add("upload_bytes_per_step", offloadUploadBytes));
      if (haveVae) {
        JsonObject v;
        v.add("vae", m.name == "ti2v5b" ? "wan2.2" : m.name == "a14b" ? "wan2.1" : "tiny").add("dtype", dtypeToName(vaeDtype));
        v.add("latent_frames", latentFrames).add("latent_height", latentH).add("latent_width", latentW);
        v.add("warmup_latent_frames", warmup > 0 ? std::min<int64_t>(2, latentFrames) : int64_t{0});
        v.add("weight_bytes", vaeWeightBytes).add("free_bytes", vaeFreeBytes);
        v.add("tile_size", m.tileSize).add("tile_overlap", m.tileOverlap).add("tiled_splits_frames", vaeSplits);
        if (vaeUntiled.ran) v.add("untiled", vaeUntiled.json());
        else v.addNull("untiled").add("untiled_estimate_bytes", vaeUntiled.estimateBytes);
        if (vaeTiled.ran) v.add("tiled", vaeTiled.json());
        else v.addNull("tiled").add("tiled_estimate_bytes", vaeTiled.estimateBytes);
        v.add("seconds_min", vaeSeconds).add("peak_bytes", (vaeUntiled.ran ? vaeUntiled : vaeTiled).peak.bytes);
        v.add("counted", vaeUntiled.ran ? "untiled" : "tiled");
        j.add("vae_decode", v);
      } else {
        j.addNull("vae_decode");
      }
      j.add("end_to_end_seconds", endToEnd);
      std::cout << j.str() << std::endl;
      return 0;
    }

    std::printf("wan_bench: model %s, %s %s, torch %s, %lld threads\n", m.name.c_str(), device.str().c_str(), dtypeToName(dtype).c_str(),
                torchVersion().c_str(), static_cast<long long>(at::get_num_threads()));
    std::printf("  video %lldx%lldx%lld -> %lld tokens, text %lld tokens, DiT %lld layers dim %lld\n", static_cast<long long>(m.width),
                static_cast<long long>(m.height), static_cast<long long>(m.frames), static_cast<long long>(tokens),
                static_cast<long long>(textLen), static_cast<long long>(m.dit.numLayers), static_cast<long long>(m.dit.dim()));
    if (haveRates)
      std::printf("  measured rates: matmul %s, attention %s (%s)\n", human(rates.matmul / 1e12, "TFLOP/s").c_str(),
                  human(rates.attention / 1e12, "TFLOP/s").c_str(), rates.attentionBackend.c_str());
    std::printf("  %-14s %10s %10s %12s %10s %12s %12s\n", "component", "s/call", "min s", "TFLOP/s", "of floor", "peak", "weights");
    auto row = [&](const ComponentResult& c) {
      std::printf("  %-14s %10.4g %10.4g %12.4g %10.3g %12s %12s\n", c.name.c_str(), c.timing.mean, c.timing.min,
                  c.flops.total() / c.timing.min / 1e12, haveRates ? c.floorSeconds / c.timing.min : NAN,
                  human(static_cast<double>(c.peak.bytes) / (1 << 30), "GiB").c_str(),
                  human(static_cast<double>(c.weightBytes) / (1 << 30), "GiB").c_str());
    };
    if (haveText) row(text);
    if (haveDit) row(dit);
    if (haveDit && offload != "none") {
      row(ditOffload);
      std::printf("  (%s: weights in host memory%s, %s uploaded per step; output %s the resident one)\n", ditOffload.name.c_str(),
                  offload == "model" ? ", each call uploads the whole expert and drops it" : ", blocks streamed with prefetch",
                  human(static_cast<double>(offloadUploadBytes) / (1 << 30), "GiB").c_str(), offloadMatches ? "bit-identical to" : "DIFFERS from");
    }
    auto vaeRow = [&](const char* name, const VaeDecodeResult& r) {
      std::printf("  %-14s %10.4g %10.4g %12s %10s %12s %12s\n", name, r.timing.mean, r.timing.min, "-", "-",
                  human(static_cast<double>(r.peak.bytes) / (1 << 30), "GiB").c_str(),
                  human(static_cast<double>(vaeWeightBytes) / (1 << 30), "GiB").c_str());
    };
    if (haveVae) {
      if (vaeUntiled.ran) vaeRow("vae_decode", vaeUntiled);
      else
        std::printf("  %-14s untiled not run: estimate %s > free %s\n", "vae_decode", human(static_cast<double>(vaeUntiled.estimateBytes) / (1 << 30), "GiB").c_str(),
                    human(static_cast<double>(vaeFreeBytes) / (1 << 30), "GiB").c_str());
      if (vaeTiled.ran) vaeRow("vae_dec_tiled", vaeTiled);
      std::printf("  (VAE in %s, FLOPs not counted; tiles %lld px, overlap %lld px%s)\n", dtypeToName(vaeDtype).c_str(), static_cast<long long>(m.tileSize), static_cast<long long>(m.tileOverlap),
                  vaeSplits ? "" : "; one tile covers the frame, so the tiled row decodes whole frames");
    }
    std::printf("  end to end (text + %lld steps + decode%s): %.4g s\n", static_cast<long long>(m.steps),
                haveVae ? (vaeUntiled.ran ? ", untiled" : ", tiled") : " not measured", endToEnd);
    if (device.is_cuda())
      std::printf("  SDPA backend at the DiT's self-attention shape: %s (order tried: %s)\n", sdpaAtShape.c_str(), sdpaPriority.c_str());
    if (!attentionAtDitShape.rates.empty()) {
      std::printf("  self-attention at the DiT's shape, each backend first in turn:");
      for (const auto& [name, rate] : attentionAtDitShape.rates)
        std::printf(" %s %s", name.c_str(), std::isnan(rate) ? "(does not take it)" : human(rate / 1e12, "TFLOP/s").c_str());
      std::printf("\n");
      for (const auto& [name, a] : attentionAtDitShape.vsReference)
        std::printf("    %s vs %s: max rel %.3g, cosine %.7f\n", name.c_str(), attentionAtDitShape.reference.c_str(), a.maxRel, a.cosine);
      for (const auto& [name, a] : attentionAtDitShape.vsFloat32)
        std::printf("    %s vs float32 (%lld query rows): max rel %.3g, cosine %.7f\n", name.c_str(),
                    static_cast<long long>(2 * attentionAtDitShape.checkRows), a.maxRel, a.cosine);
    }
    if (haveVsDefaultOrder)
      std::printf("  DiT step in order %s vs libtorch's default (%s): max rel %.3g, cosine %.7f\n", sdpaOrder.c_str(), defaultPriority.c_str(),
                  vsDefaultOrder.maxRel, vsDefaultOrder.cosine);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wan_bench: %s\n", e.what());
    return 1;
  }
}
