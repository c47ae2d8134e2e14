#include "model_config.h"

#include <cmath>

#include "errors.h"

namespace wan {

namespace {
// config.json, scheduler_config.json and model_index.json of real checkpoints have a few KB.
constexpr size_t kMaxConfigBytes = size_t{1} << 20;
}  // namespace

ConfigReader::ConfigReader(const std::string& path) : path_(path), root_(json::parseFile(path, kMaxConfigBytes)) {
  if (!root_.isObject()) throwBadCheckpoint(path + ": expected a JSON object at the top level");
}

ConfigReader::ConfigReader(std::string label, json::Value root) : path_(std::move(label)), root_(std::move(root)) {
  if (!root_.isObject()) throwBadCheckpoint(path_ + ": expected a JSON object at the top level");
}

void ConfigReader::fail(const std::string& field, const std::string& what) const {
  throwBadCheckpoint(path_ + ": field '" + field + "' " + what);
}

const json::Value* ConfigReader::raw(const std::string& field) const { return root_.find(field); }

bool ConfigReader::has(const std::string& field) const {
  const json::Value* v = root_.find(field);
  return v && !v->isNull();
}

int64_t ConfigReader::integer(const std::string& field) const {
  auto v = optionalInteger(field);
  if (!v) fail(field, "is missing");
  return *v;
}

std::optional<int64_t> ConfigReader::optionalInteger(const std::string& field) const {
  const json::Value* v = root_.find(field);
  if (!v || v->isNull()) return std::nullopt;
  if (!v->isNumber() || std::floor(v->number) != v->number || std::fabs(v->number) > 9e15) fail(field, "must be an integer");
  return static_cast<int64_t>(v->number);
}

double ConfigReader::number(const std::string& field) const {
  auto v = optionalNumber(field);
  if (!v) fail(field, "is missing");
  return *v;
}

std::optional<double> ConfigReader::optionalNumber(const std::string& field) const {
  const json::Value* v = root_.find(field);
  if (!v || v->isNull()) return std::nullopt;
  if (!v->isNumber() || !std::isfinite(v->number)) fail(field, "must be a finite number");
  return v->number;
}

bool ConfigReader::boolean(const std::string& field, std::optional<bool> fallback) const {
  const json::Value* v = root_.find(field);
  if (!v || v->isNull()) {
    if (fallback) return *fallback;
    fail(field, "is missing");
  }
  if (!v->isBool()) fail(field, "must be true or false");
  return v->boolean;
}

std::string ConfigReader::string(const std::string& field, std::optional<std::string> fallback) const {
  const json::Value* v = root_.find(field);
  if (!v || v->isNull()) {
    if (fallback) return *fallback;
    fail(field, "is missing");
  }
  if (!v->isString()) fail(field, "must be a string");
  return v->text;
}

std::vector<int64_t> ConfigReader::integers(const std::string& field) const {
  const json::Value* v = root_.find(field);
  if (!v || !v->isArray()) fail(field, "must be an array of integers");
  std::vector<int64_t> out;
  for (const auto& x : v->items) {
    if (!x.isNumber() || std::floor(x.number) != x.number || std::fabs(x.number) > 9e15) fail(field, "must be an array of integers");
    out.push_back(static_cast<int64_t>(x.number));
  }
  return out;
}

std::vector<double> ConfigReader::numbers(const std::string& field) const {
  const json::Value* v = root_.find(field);
  if (!v || !v->isArray()) fail(field, "must be an array of numbers");
  std::vector<double> out;
  for (const auto& x : v->items) {
    if (!x.isNumber() || !std::isfinite(x.number)) fail(field, "must be an array of finite numbers");
    out.push_back(x.number);
  }
  return out;
}

std::vector<bool> ConfigReader::booleans(const std::string& field) const {
  const json::Value* v = root_.find(field);
  if (!v || !v->isArray()) fail(field, "must be an array of booleans");
  std::vector<bool> out;
  for (const auto& x : v->items) {
    if (!x.isBool()) fail(field, "must be an array of booleans");
    out.push_back(x.boolean);
  }
  return out;
}

namespace {
void requirePositive(const ConfigReader& r, const std::string& field, int64_t v, int64_t max = 1 << 20) {
  if (v <= 0 || v > max) r.fail(field, "must be between 1 and " + std::to_string(max) + " (is " + std::to_string(v) + ")");
}
// A normalization epsilon: a negative one takes the square root of negative variances (NaN
// everywhere, silently).
void requireEpsilon(const ConfigReader& r, const std::string& field, double eps) {
  if (!(eps > 0 && eps < 1)) r.fail(field, "must be a positive number below 1 (is " + std::to_string(eps) + ")");
}
}  // namespace

TransformerConfig readTransformerConfig(const std::string& path) {
  ConfigReader r(path);
  TransformerConfig c;
  c.inChannels = r.integer("in_channels");
  c.outChannels = r.integer("out_channels");
  c.numHeads = r.integer("num_attention_heads");
  c.headDim = r.integer("attention_head_dim");
  c.numLayers = r.integer("num_layers");
  c.ffnDim = r.integer("ffn_dim");
  c.freqDim = r.integer("freq_dim");
  c.textDim = r.integer("text_dim");
  c.ropeMaxSeqLen = r.optionalInteger("rope_max_seq_len").value_or(1024);
  c.eps = r.optionalNumber("eps").value_or(1e-6);
  c.crossAttnNorm = r.boolean("cross_attn_norm", false);
  c.qkNorm = r.string("qk_norm", std::string("rms_norm_across_heads"));
  for (const char* f : {"in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers", "ffn_dim", "freq_dim", "text_dim", "rope_max_seq_len"})
    requirePositive(r, f, r.optionalInteger(f).value_or(1));
  requireEpsilon(r, "eps", c.eps);
  auto patch = r.integers("patch_size");
  if (patch.size() != 3) r.fail("patch_size", "must have 3 entries [t, h, w]");
  for (auto p : patch) requirePositive(r, "patch_size", p, 64);
  c.patchSize = {patch[0], patch[1], patch[2]};
  if (c.qkNorm != "rms_norm_across_heads") r.fail("qk_norm", "is '" + c.qkNorm + "'; only 'rms_norm_across_heads' (Wan2.2) is supported");
  if (c.headDim % 2 != 0 || c.headDim < 6) r.fail("attention_head_dim", "must be even and at least 6 (3-axis rotary embedding)");
  // The timestep embedding is freq_dim/2 cosines and freq_dim/2 sines: odd, the first linear layer
  // (freq_dim inputs) could never be applied.
  if (c.freqDim % 2 != 0) r.fail("freq_dim", "must be even (half cosines, half sines of the timestep; is " + std::to_string(c.freqDim) + ")");
  if (r.has("image_dim")) r.fail("image_dim", "is set: Wan2.1 CLIP image conditioning is not supported (Wan2.2 models do not use it)");
  if (r.has("added_kv_proj_dim")) r.fail("added_kv_proj_dim", "is set: image cross-attention projections are not supported (Wan2.2 models do not use them)");
  return c;
}

TextEncoderConfig readTextEncoderConfig(const std::string& path) {
  ConfigReader r(path);
  TextEncoderConfig c;
  c.dModel = r.integer("d_model");
  c.dKv = r.integer("d_kv");
  c.dFf = r.integer("d_ff");
  c.numLayers = r.integer("num_layers");
  c.numHeads = r.integer("num_heads");
  c.vocabSize = r.integer("vocab_size");
  c.relativeAttentionNumBuckets = r.optionalInteger("relative_attention_num_buckets").value_or(32);
  c.relativeAttentionMaxDistance = r.optionalInteger("relative_attention_max_distance").value_or(128);
  c.eps = r.optionalNumber("layer_norm_epsilon").value_or(1e-6);
  c.feedForwardProj = r.string("feed_forward_proj", std::string("gated-gelu"));
  for (const char* f : {"d_model", "d_kv", "d_ff", "num_layers", "num_heads", "vocab_size"}) requirePositive(r, f, r.integer(f), 1 << 24);
  requirePositive(r, "relative_attention_num_buckets", c.relativeAttentionNumBuckets, 4096);
  requirePositive(r, "relative_attention_max_distance", c.relativeAttentionMaxDistance, 1 << 20);
  // Bidirectional buckets: half per direction, the first half of those exact distances, the rest
  // log-spaced up to max_distance. Below 4 buckets or with max_distance inside the exact range the
  // log spacing divides by zero or goes negative: NaN and out-of-range bucket indices.
  const int64_t exactRange = c.relativeAttentionNumBuckets / 2 / 2;
  if (exactRange < 1) r.fail("relative_attention_num_buckets", "must be at least 4 (is " + std::to_string(c.relativeAttentionNumBuckets) + ")");
  if (c.relativeAttentionMaxDistance <= exactRange)
    r.fail("relative_attention_max_distance", "must be greater than relative_attention_num_buckets / 4 = " + std::to_string(exactRange) + " (is " +
                                                  std::to_string(c.relativeAttentionMaxDistance) + ")");
  requireEpsilon(r, "layer_norm_epsilon", c.eps);
  if (c.feedForwardProj != "gated-gelu") r.fail("feed_forward_proj", "is '" + c.feedForwardProj + "'; only 'gated-gelu' (umt5) is supported");
  return c;
}

VaeConfig readVaeConfig(const std::string& path) {
  ConfigReader r(path);
  VaeConfig c;
  c.baseDim = r.integer("base_dim");
  c.decoderBaseDim = r.optionalInteger("decoder_base_dim").value_or(c.baseDim);
  c.zDim = r.integer("z_dim");
  c.inChannels = r.optionalInteger("in_channels").value_or(3);
  c.outChannels = r.optionalInteger("out_channels").value_or(3);
  c.numResBlocks = r.integer("num_res_blocks");
  c.patchSize = r.optionalInteger("patch_size").value_or(1);
  c.scaleFactorSpatial = r.optionalInteger("scale_factor_spatial").value_or(8);
  c.scaleFactorTemporal = r.optionalInteger("scale_factor_temporal").value_or(4);
  c.dimMult = r.integers("dim_mult");
  c.temporalDownsample = r.booleans("temperal_downsample");
  c.attnScales = r.has("attn_scales") ? r.numbers("attn_scales") : std::vector<double>{};
  c.isResidual = r.boolean("is_residual", false);
  c.latentsMean = r.numbers("latents_mean");
  c.latentsStd = r.numbers("latents_std");
  for (const char* f : {"base_dim", "z_dim", "num_res_blocks"}) requirePositive(r, f, r.integer(f), 1 << 16);
  requirePositive(r, "decoder_base_dim", c.decoderBaseDim, 1 << 16);
  requirePositive(r, "patch_size", c.patchSize, 16);
  if (c.dimMult.empty() || c.dimMult.size() > 8) r.fail("dim_mult", "must have 1 to 8 entries");
  for (auto m : c.dimMult) requirePositive(r, "dim_mult", m, 64);
  if (c.temporalDownsample.size() + 1 != c.dimMult.size()) r.fail("temperal_downsample", "must have one entry fewer than dim_mult");
  if (static_cast<int64_t>(c.latentsMean.size()) != c.zDim) r.fail("latents_mean", "must have z_dim entries");
  if (static_cast<int64_t>(c.latentsStd.size()) != c.zDim) r.fail("latents_std", "must have z_dim entries");
  for (double s : c.latentsStd)
    if (!(s > 0)) r.fail("latents_std", "entries must be positive");
  int64_t expectedIn = 3 * c.patchSize * c.patchSize;
  if (c.inChannels != expectedIn) r.fail("in_channels", "must be 3 * patch_size^2 = " + std::to_string(expectedIn));
  if (c.outChannels != expectedIn) r.fail("out_channels", "must be 3 * patch_size^2 = " + std::to_string(expectedIn));
  return c;
}

SchedulerConfig readSchedulerConfig(const std::string& path) {
  ConfigReader r(path);
  SchedulerConfig c;
  c.className = r.string("_class_name", std::string("UniPCMultistepScheduler"));
  c.numTrainTimesteps = r.optionalInteger("num_train_timesteps").value_or(1000);
  c.solverOrder = r.optionalInteger("solver_order").value_or(2);
  c.stepsOffset = r.optionalInteger("steps_offset").value_or(0);
  c.predictionType = r.string("prediction_type", std::string("flow_prediction"));
  c.solverType = r.string("solver_type", std::string("bh2"));
  c.finalSigmasType = r.string("final_sigmas_type", std::string("zero"));
  c.timestepSpacing = r.string("timestep_spacing", std::string("linspace"));
  c.predictX0 = r.boolean("predict_x0", true);
  c.lowerOrderFinal = r.boolean("lower_order_final", true);
  c.useFlowSigmas = r.boolean("use_flow_sigmas", false);
  c.thresholding = r.boolean("thresholding", false);
  c.useKarrasSigmas = r.boolean("use_karras_sigmas", false);
  c.useExponentialSigmas = r.boolean("use_exponential_sigmas", false);
  c.useBetaSigmas = r.boolean("use_beta_sigmas", false);
  c.useDynamicShifting = r.boolean("use_dynamic_shifting", false);
  c.flowShift = r.optionalNumber("flow_shift").value_or(1.0);
  if (r.has("disable_corrector")) c.disableCorrector = r.integers("disable_corrector");
  c.shiftTerminal = r.optionalNumber("shift_terminal");
  c.hasSolverP = r.has("solver_p");
  c.path = path;
  // One training timestep leaves no interval to put sigmas on (every sample turns NaN).
  if (c.numTrainTimesteps < 2 || c.numTrainTimesteps > (1 << 20))
    r.fail("num_train_timesteps", "must be between 2 and " + std::to_string(1 << 20) + " (is " + std::to_string(c.numTrainTimesteps) + ")");
  if (!(c.flowShift > 0)) r.fail("flow_shift", "must be positive");
  return c;
}

ModelIndex readModelIndex(const std::string& path) {
  ConfigReader r(path);
  ModelIndex m;
  m.className = r.string("_class_name");
  if (m.className != "WanPipeline" && m.className != "WanImageToVideoPipeline")
    r.fail("_class_name", "is '" + m.className + "'; expected 'WanPipeline' or 'WanImageToVideoPipeline' (a Wan2.2 Diffusers folder)");
  m.boundaryRatio = r.optionalNumber("boundary_ratio");
  if (m.boundaryRatio && (*m.boundaryRatio <= 0 || *m.boundaryRatio >= 1)) r.fail("boundary_ratio", "must be between 0 and 1");
  m.expandTimesteps = r.boolean("expand_timesteps", false);
  auto component = [&](const char* name) {
    const json::Value* v = r.raw(name);
    return v && v->isArray() && v->items.size() == 2 && !v->items[0].isNull() && !v->items[1].isNull();
  };
  m.hasTransformer2 = component("transformer_2");
  m.hasTokenizer = component("tokenizer");
  return m;
}

}  // namespace wan
