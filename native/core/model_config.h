// Typed configs of the Diffusers layout: model_index.json and each component's config.json.
// Missing or invalid fields are ERR_WAN_BAD_CHECKPOINT naming the file and the field.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "json.h"

namespace wan {

// Reads typed fields of one JSON object, with errors that name the file and field.
class ConfigReader {
 public:
  explicit ConfigReader(const std::string& path);
  ConfigReader(std::string label, json::Value root);

  bool has(const std::string& field) const;  // present and not null
  int64_t integer(const std::string& field) const;
  std::optional<int64_t> optionalInteger(const std::string& field) const;
  double number(const std::string& field) const;
  std::optional<double> optionalNumber(const std::string& field) const;
  bool boolean(const std::string& field, std::optional<bool> fallback = std::nullopt) const;
  std::string string(const std::string& field, std::optional<std::string> fallback = std::nullopt) const;
  std::vector<int64_t> integers(const std::string& field) const;
  std::vector<double> numbers(const std::string& field) const;
  std::vector<bool> booleans(const std::string& field) const;
  const json::Value* raw(const std::string& field) const;
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(const std::string& field, const std::string& what) const;

 private:
  std::string path_;
  json::Value root_;
};

struct TransformerConfig {
  int64_t inChannels = 16, outChannels = 16;
  int64_t numHeads = 40, headDim = 128, numLayers = 40, ffnDim = 13824;
  int64_t freqDim = 256, textDim = 4096, ropeMaxSeqLen = 1024;
  std::array<int64_t, 3> patchSize{1, 2, 2};
  double eps = 1e-6;
  bool crossAttnNorm = true;
  std::string qkNorm = "rms_norm_across_heads";
  int64_t dim() const { return numHeads * headDim; }
};

struct TextEncoderConfig {
  int64_t dModel = 4096, dKv = 64, dFf = 10240, numLayers = 24, numHeads = 64, vocabSize = 256384;
  int64_t relativeAttentionNumBuckets = 32, relativeAttentionMaxDistance = 128;
  double eps = 1e-6;
  std::string feedForwardProj = "gated-gelu";
};

struct VaeConfig {
  int64_t baseDim = 96, decoderBaseDim = 96, zDim = 16, inChannels = 3, outChannels = 3, numResBlocks = 2;
  int64_t patchSize = 1;  // 1 = no patchify (Wan2.1), 2 = 2x2 patchify (Wan2.2)
  int64_t scaleFactorSpatial = 8, scaleFactorTemporal = 4;
  std::vector<int64_t> dimMult{1, 2, 4, 4};
  std::vector<bool> temporalDownsample{false, true, true};
  std::vector<double> attnScales;
  bool isResidual = false;
  std::vector<double> latentsMean, latentsStd;  // z_dim entries each
};

struct SchedulerConfig {
  std::string className = "UniPCMultistepScheduler";
  int64_t numTrainTimesteps = 1000, solverOrder = 2, stepsOffset = 0;
  std::string predictionType = "flow_prediction", solverType = "bh2", finalSigmasType = "zero";
  std::string timestepSpacing = "linspace";
  bool predictX0 = true, lowerOrderFinal = true, useFlowSigmas = true, thresholding = false;
  bool useKarrasSigmas = false, useExponentialSigmas = false, useBetaSigmas = false, useDynamicShifting = false;
  double flowShift = 1.0;
  std::vector<int64_t> disableCorrector;
  std::optional<double> shiftTerminal;  // diffusers stretches flow sigmas to end here when set (not 0)
  bool hasSolverP = false;              // `solver_p` names another scheduler (UniP replaced by it)
  std::string path;                     // the file read, for error messages ("" for built-in defaults)
};

struct ModelIndex {
  std::string className;  // WanPipeline | WanImageToVideoPipeline
  std::optional<double> boundaryRatio;
  bool expandTimesteps = false;
  bool hasTransformer2 = false;
  bool hasTokenizer = false;
};

TransformerConfig readTransformerConfig(const std::string& path);
TextEncoderConfig readTextEncoderConfig(const std::string& path);
VaeConfig readVaeConfig(const std::string& path);
SchedulerConfig readSchedulerConfig(const std::string& path);
ModelIndex readModelIndex(const std::string& path);

}  // namespace wan
