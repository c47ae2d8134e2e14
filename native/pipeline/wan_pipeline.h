// Text/image to video: prompt embeddings -> initial latents -> denoise loop (CFG, the A14B expert
// switch, I2V / TI2V conditioning) -> VAE decode. Follows diffusers' WanPipeline and
// WanImageToVideoPipeline step for step so results can be compared with the reference.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/run_context.h"
#include "pipeline/prompt_cache.h"

namespace wan {

class ExpertPair;
class Umt5Encoder;
class WanTransformer;
class WanVae;

enum class ModelFamily { T2vA14b, I2vA14b, Ti2v5b };
const char* familyName(ModelFamily f);

struct PipelineOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;      // DiT and text encoder
  at::Device textEncoderDevice = at::kCPU;
  at::ScalarType vaeDtype = at::kFloat;
  std::string offload = "none";           // none | model | sequential
};

// The most videos one generate() makes (prompts x numVideosPerPrompt): they form one batch.
constexpr int64_t kMaxVideosPerCall = 64;

// One prompt's token ids and attention mask, [B, L] int64.
struct TokenizedText {
  at::Tensor ids, mask;
};

struct GenerateRequest {
  // Conditioning: token ids + masks ([B, L] int64) to encode, or ready embeddings [B, 512, D].
  at::Tensor promptIds, promptMask, negativeIds, negativeMask;
  at::Tensor promptEmbeds, negativeEmbeds;
  at::Tensor image;  // I2V: [B or 1, 3, H, W] in [-1, 1], already at (height, width)
  int64_t width = 0, height = 0, numFrames = 0, steps = 0, numVideosPerPrompt = 1;
  double guidanceScale = 1.0;
  std::optional<double> guidanceScale2;
  std::optional<double> shift;
  std::string sampler = "unipc";
  uint64_t seed = 0;
  at::Tensor latents;         // optional initial noise [B*n, C, F', H', W'] float32
  bool outputLatents = false; // stop after denoising
  bool returnFloat = false;   // keep the float video beside the uint8 frames
  bool recordSteps = false;   // keep per-step latents and model timesteps (parity runs)
  bool tiledDecode = false;
  bool autoTiledDecode = true;
};

// Final latents to decode on their own (WanPipeline::decode): a generation's GenerateResult::latents.
struct DecodeRequest {
  at::Tensor latents;  // [B, z, F', h, w] float32, the pipeline's normalized space
  bool returnFloat = false;  // keep the float video beside the uint8 frames
  bool tiledDecode = false;
  bool autoTiledDecode = true;
};

struct GenerateResult {
  at::Tensor frames;         // [B, F, H, W, 3] uint8 RGB on the CPU (videoToFrames; empty when outputLatents)
  at::Tensor video;          // [B, 3, F, H, W] float32 in [-1, 1], on the device; only with returnFloat
  at::Tensor latents;        // final normalized latents [B, C, F', H', W']
  at::Tensor decoderInput;   // de-normalized latents given to the VAE
  at::Tensor promptEmbeds, negativePromptEmbeds;
  std::vector<int64_t> timesteps;
  std::vector<float> sigmas;
  std::vector<int64_t> expertPerStep;  // 1 = transformer/ (high noise), 2 = transformer_2/
  at::Tensor latentsPerStep;           // [steps, B, C, F', H', W'] when recordSteps
  at::Tensor modelTimestepPerStep;     // [steps, B] or [steps, B, seq] when recordSteps
  at::Tensor condition;                // I2V A14B: the 20 condition channels; TI2V I2V: latent condition
  std::string attentionBackend;        // the SDPA backend of the DiT's self-attention (WanTransformer::selfAttentionBackend)
};

// How load() builds each component from its folder (text_encoder/, transformer/, transformer_2/,
// vae/): by default from the checkpoint there. wan_bench --pipeline builds them with random weights
// at the real sizes instead, to measure a whole generation's time and peak memory without a
// checkpoint.
// The RunContext is the load's: checked for cancellation before each tensor.
struct ComponentBuilders {
  std::function<std::unique_ptr<Umt5Encoder>(const std::string& dir, at::ScalarType, at::Device, const RunContext*)> textEncoder;
  std::function<std::unique_ptr<WanTransformer>(const std::string& dir, at::ScalarType, at::Device, const RunContext*)> transformer;
  std::function<std::unique_ptr<WanVae>(const std::string& dir, at::ScalarType, at::Device, const RunContext*)> vae;
  static ComponentBuilders fromCheckpoints();
};

class WanPipeline {
 public:
  static std::unique_ptr<WanPipeline> load(const std::string& dir, const PipelineOptions& options, const RunContext& ctx,
                                           const ComponentBuilders& builders = ComponentBuilders::fromCheckpoints());
  ~WanPipeline();

  GenerateResult generate(const GenerateRequest& request, const RunContext& ctx);
  // generate() into `out`, which keeps what was done when it throws: once the denoise loop has
  // ended, out.latents holds the final latents, so a failed decode (out of memory, an abort) loses
  // no work; decode() finishes it.
  void generateInto(const GenerateRequest& request, const RunContext& ctx, GenerateResult& out);
  // Decodes final latents to video: fills out.frames (uint8 [B, F, H, W, 3]), out.video with
  // returnFloat ([B, 3, F, H, W] float32 in [-1, 1]) and out.decoderInput, as generate()'s decode
  // step does (same tiling rule, same progress events).
  void decode(const DecodeRequest& request, const RunContext& ctx, GenerateResult& out);

  ModelFamily family() const { return family_; }
  const ModelIndex& modelIndex() const { return index_; }
  const TransformerConfig& transformerConfig() const;
  const VaeConfig& vaeConfig() const;
  const SchedulerConfig& schedulerConfig() const { return scheduler_; }
  const PipelineOptions& options() const { return options_; }
  int64_t textDim() const;
  size_t cachedPrompts() const { return promptCache_.size(); }
  // Prompts (and negative prompts) the text encoder has encoded since the load: the cache's misses.
  int64_t encodedPrompts() const { return encodedPrompts_.load(); }
  // Bytes of DiT and VAE weights that stay on the device between generations: all of them with
  // offload 'none', the DiT's outer layers with 'sequential', none with 'model' (host copies are not
  // counted). Updated when a load or a generation ends, so any thread may read it.
  int64_t residentWeightBytes() const { return residentWeightBytes_.load(); }
  void clearPromptCache() { promptCache_.clear(); }

 private:
  WanPipeline() = default;
  // Prompt embeddings [B, 512, D] (rows past each prompt's length zeroed) on the CPU, one per
  // text, from the prompt cache or encoded in one visit of the text encoder to its device.
  std::vector<at::Tensor> encodeTexts(const std::vector<TokenizedText>& texts, const RunContext& ctx);
  void validate(const GenerateRequest& r) const;
  // The decode step: VAE visit, de-normalization, the tiling rule, the uint8 frames, the "done" event.
  void decodeLatents(const at::Tensor& latents, bool tiledDecode, bool autoTiledDecode, bool returnFloat, const RunContext& ctx,
                     std::chrono::steady_clock::time_point start, GenerateResult& out);
  void updateResidentWeightBytes();

  std::string dir_;
  PipelineOptions options_;
  ModelIndex index_;
  SchedulerConfig scheduler_;
  ModelFamily family_ = ModelFamily::T2vA14b;
  std::unique_ptr<Umt5Encoder> textEncoder_;
  std::unique_ptr<ExpertPair> experts_;  // transformer/ (+ transformer_2/ for A14B)
  std::unique_ptr<WanVae> vae_;
  PromptCache promptCache_;
  std::atomic<int64_t> residentWeightBytes_{0};
  std::atomic<int64_t> encodedPrompts_{0};
};

}  // namespace wan
