#include "pipeline/wan_pipeline.h"

#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/device.h"
#include "core/errors.h"
#include "core/rng.h"
#include "core/tensor_io.h"
#include "core/weight_transfer.h"
#include "models/expert_pair.h"
#include "models/scheduler.h"
#include "models/umt5_encoder.h"
#include "models/wan_transformer.h"
#include "models/wan_vae.h"
#include "pipeline/video_frames.h"

namespace fs = std::filesystem;

namespace wan {

const char* familyName(ModelFamily f) {
  switch (f) {
    case ModelFamily::T2vA14b: return "t2v-a14b";
    case ModelFamily::I2vA14b: return "i2v-a14b";
    case ModelFamily::Ti2v5b: return "ti2v-5b";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); }

// The last event of a generate or decode call.
void reportDone(const RunContext& ctx, Clock::time_point start) {
  ProgressEvent done;
  done.stage = "done";
  done.step = 1;
  done.totalSteps = 1;
  done.elapsedMs = msSince(start);
  ctx.progress(done);
}


void requireShape(const at::Tensor& t, const std::vector<int64_t>& shape, const std::string& what) {
  if (t.sizes().vec() != shape) throwBadArgument(what + " has shape " + shapeString(t.sizes()) + ", expected " + shapeString(shape));
}

// A component (text encoder, VAE) visits `device` for a scope and leaves it after, also when the
// scope ends by an exception (abort, OOM), so the pipeline stays usable. No-op where it lives.
template <typename Component>
class Visit {
 public:
  Visit(Component& component, at::Device device) : component_(component) { component_.visit(device); }
  ~Visit() { component_.leave(); }
  Visit(const Visit&) = delete;
  Visit& operator=(const Visit&) = delete;

 private:
  Component& component_;
};

// 'model' offload: at most one expert has a copy on the device. A swap drops the idle expert's copy
// before the next one uploads, so the peak holds one expert; the upload runs on a side stream and
// the first forward waits block by block, so the swap overlaps that forward's compute. Every copy
// is dropped when the scope ends, also by an exception, so the pipeline stays usable.
class ActiveExpert {
 public:
  explicit ActiveExpert(bool enabled) : enabled_(enabled) {}
  ~ActiveExpert() {
    try {
      release();
    } catch (...) {
      // Only a failing device synchronize lands here; the copy is dropped with the expert's state.
    }
  }
  ActiveExpert(const ActiveExpert&) = delete;
  ActiveExpert& operator=(const ActiveExpert&) = delete;

  void use(WanTransformer& expert) {
    if (!enabled_ || current_ == &expert) return;
    release();
    expert.upload();
    current_ = &expert;
  }
  void release() {
    if (!current_) return;
    WanTransformer* done = current_;
    current_ = nullptr;
    done->release();
  }

 private:
  bool enabled_;
  WanTransformer* current_ = nullptr;
};

// A float16 VAE on the CPU needs libtorch's half-precision CPU convolutions (torch 2.x has them,
// Debian's 1.13 not): asked once at load, so that every decode does not fail later.
void requireCpuHalfConvolutions() {
  try {
    const at::Tensor one = at::ones({1, 1, 1, 1, 1}, at::TensorOptions().dtype(at::kHalf));
    (void)at::conv3d(one, one);
  } catch (const c10::Error&) {
    throwBadArgument(std::string("option 'vaeDtype' is 'float16', which this libtorch (") + TORCH_VERSION +
                     ") cannot run on the CPU; use 'float32' or 'bfloat16'");
  }
}

}  // namespace

WanPipeline::~WanPipeline() {
  // Offloaded weights sat in pinned host memory, which libtorch's host allocator keeps cached when
  // freed: hand it back to the system with the pipeline (an A14B pair holds ~57 GB of it).
  const bool pinned = options_.device.is_cuda() && options_.offload != "none";
  experts_.reset();
  // A destructor must not throw: after a sticky CUDA error, emptying the cache throws too.
  try {
    if (pinned) releaseCachedPinnedMemory();
  } catch (...) {
  }
}

const TransformerConfig& WanPipeline::transformerConfig() const { return experts_->expert(ExpertPair::Expert::High).config(); }
const VaeConfig& WanPipeline::vaeConfig() const { return vae_->config(); }
int64_t WanPipeline::textDim() const { return transformerConfig().textDim; }

ComponentBuilders ComponentBuilders::fromCheckpoints() {
  return {&Umt5Encoder::load, &WanTransformer::load, &WanVae::load};
}

std::unique_ptr<WanPipeline> WanPipeline::load(const std::string& dir, const PipelineOptions& options, const RunContext& ctx,
                                               const ComponentBuilders& builders) {
  std::unique_ptr<WanPipeline> p(new WanPipeline());
  p->dir_ = dir;
  p->options_ = options;
  const fs::path root(dir);
  std::error_code ec;  // (a symlink loop is a bad folder, not an internal error)
  if (!fs::is_directory(root, ec)) throwBadCheckpoint(dir + " is not a folder (expected a Wan2.2 Diffusers model folder)");
  p->index_ = readModelIndex((root / "model_index.json").string());
  p->scheduler_ = readSchedulerConfig((root / "scheduler" / "scheduler_config.json").string());
  // What the default sampler cannot run is a bad folder now, not a failure of every generate().
  validateSchedulerConfig(p->scheduler_, "unipc");
  if (!options.device.is_cuda() && options.vaeDtype == at::kHalf) requireCpuHalfConvolutions();

  const int64_t total = p->index_.hasTransformer2 ? 4 : 3;
  int64_t step = 0;
  auto start = Clock::now();
  auto loaded = [&](const char* what) {
    ProgressEvent e;
    e.stage = "load";
    e.step = ++step;
    e.totalSteps = total;
    e.elapsedMs = msSince(start);
    e.message = what;
    ctx.progress(e);
  };

  // Where the DiT experts live between uses (`offload`): on the device ('none'), or in host memory,
  // visiting the device whole per expert ('model') or block by block ('sequential'). On the CPU the
  // offload modes run the same code, and their "uploads" return the very tensors (no copies). The
  // text encoder visits its device only while encoding, in every mode: its ~11 GB need not stay on
  // the GPU through the denoise loop.
  // The experts take turns on the device through one upload stream: the caching allocator reuses
  // memory only within a stream, so with one each the second expert would allocate anew beside the
  // first one's dropped (but still reserved) copy.
  const at::Device home = options.offload == "none" ? options.device : at::Device(at::kCPU);
  const auto uploads = options.offload == "none" ? nullptr : std::make_shared<UploadStream>(options.device);
  auto place = [&](WanTransformer& expert) {
    if (options.offload == "model") expert.offload(options.device, uploads, &ctx);
    if (options.offload == "sequential") expert.streamBlocks(options.device, uploads, &ctx);
  };
  ctx.checkCancelled();
  p->textEncoder_ = builders.textEncoder((root / "text_encoder").string(), options.dtype, at::kCPU, &ctx);
  loaded("text_encoder");
  ctx.checkCancelled();
  auto high = builders.transformer((root / "transformer").string(), options.dtype, home, &ctx);
  place(*high);
  loaded("transformer");
  std::unique_ptr<WanTransformer> low;
  if (p->index_.hasTransformer2) {
    ctx.checkCancelled();
    low = builders.transformer((root / "transformer_2").string(), options.dtype, home, &ctx);
    place(*low);
    loaded("transformer_2");
  }
  p->experts_ = std::make_unique<ExpertPair>(std::move(high), std::move(low), p->index_.boundaryRatio, p->scheduler_.numTrainTimesteps);
  ctx.checkCancelled();
  // The VAE (0.5 GB Wan2.1, 2.8 GB Wan2.2 in float32): with offload, in host memory too, visiting
  // the device to encode the conditioning image and to decode.
  p->vae_ = builders.vae((root / "vae").string(), options.vaeDtype, home, &ctx);
  loaded("vae");

  const TransformerConfig& tc = p->transformerConfig();
  const VaeConfig& vc = p->vae_->config();
  if (tc.outChannels != vc.zDim)
    throwBadCheckpoint(dir + ": transformer out_channels " + std::to_string(tc.outChannels) + " does not match the VAE's z_dim " + std::to_string(vc.zDim));
  if (tc.textDim != p->textEncoder_->config().dModel)
    throwBadCheckpoint(dir + ": transformer text_dim " + std::to_string(tc.textDim) + " does not match the text encoder's d_model " +
                       std::to_string(p->textEncoder_->config().dModel));
  if (tc.inChannels == vc.zDim * 2 + 4) {
    p->family_ = ModelFamily::I2vA14b;
  } else if (tc.inChannels == vc.zDim) {
    p->family_ = p->index_.expandTimesteps ? ModelFamily::Ti2v5b : ModelFamily::T2vA14b;
  } else {
    throwBadCheckpoint(dir + ": transformer in_channels " + std::to_string(tc.inChannels) + " fits no Wan2.2 family (z_dim " +
                       std::to_string(vc.zDim) + ": expected " + std::to_string(vc.zDim) + " or " + std::to_string(vc.zDim * 2 + 4) + ")");
  }
  if (p->index_.boundaryRatio && !p->experts_->hasTwoExperts())
    throwBadCheckpoint(dir + "/model_index.json sets boundary_ratio but the folder has no transformer_2");
  p->updateResidentWeightBytes();
  return p;
}

std::vector<at::Tensor> WanPipeline::encodeTexts(const std::vector<TokenizedText>& texts, const RunContext& ctx) {
  std::vector<at::Tensor> embeds(texts.size());
  std::vector<std::string> keys(texts.size());
  bool allCached = true;
  for (size_t i = 0; i < texts.size(); ++i) {
    keys[i] = PromptCache::keyOf(texts[i].ids, texts[i].mask);
    if (auto hit = promptCache_.get(keys[i])) embeds[i] = *hit;
    else allCached = false;
  }
  if (allCached) return embeds;
  // One visit for all of them: on a GPU each visit uploads the whole encoder (~11 GB).
  const at::Device device = options_.textEncoderDevice;
  {
    Visit<Umt5Encoder> visit(*textEncoder_, device);
    for (size_t i = 0; i < texts.size(); ++i) {
      if (embeds[i].defined()) continue;
      const at::Tensor mask = texts[i].mask.to(device);
      at::Tensor hidden = textEncoder_->encode(texts[i].ids.to(device), mask, &ctx);
      embeds[i] = zeroPastPromptLengths(hidden, mask).to(at::kCPU);
      promptCache_.put(keys[i], embeds[i]);
      encodedPrompts_ += texts[i].ids.size(0);
    }
  }
  // With offload, the encoder's memory goes back to the driver: the experts upload on their own
  // stream, which cannot reuse what the encoder's (the compute stream's) cache holds.
  if (options_.offload != "none") releaseCachedDeviceMemory(device);
  return embeds;
}

void WanPipeline::validate(const GenerateRequest& r) const {
  const VaeConfig& vc = vae_->config();
  const TransformerConfig& tc = transformerConfig();
  const int64_t hMult = vc.scaleFactorSpatial * tc.patchSize[1];
  const int64_t wMult = vc.scaleFactorSpatial * tc.patchSize[2];
  if (r.width <= 0 || r.width % wMult != 0) throwBadArgument("option 'width' is " + std::to_string(r.width) + "; it must be a positive multiple of " + std::to_string(wMult));
  if (r.height <= 0 || r.height % hMult != 0) throwBadArgument("option 'height' is " + std::to_string(r.height) + "; it must be a positive multiple of " + std::to_string(hMult));
  if (r.numFrames < 1 || (r.numFrames - 1) % vc.scaleFactorTemporal != 0)
    throwBadArgument("option 'numFrames' is " + std::to_string(r.numFrames) + "; it must be " + std::to_string(vc.scaleFactorTemporal) + "k+1");
  if (r.steps < 1 || r.steps > 1000) throwBadArgument("option 'steps' is " + std::to_string(r.steps) + "; allowed: 1..1000");
  // The DiT's rotary tables cover rope_max_seq_len patches per axis: said here in the caller's terms.
  const int64_t patchFrames = ((r.numFrames - 1) / vc.scaleFactorTemporal + 1) / tc.patchSize[0];
  auto withinRope = [&](const char* option, int64_t value, int64_t patches) {
    if (patches > tc.ropeMaxSeqLen)
      throwBadArgument(std::string("option '") + option + "' is " + std::to_string(value) + ": " + std::to_string(patches) +
                       " patches along it, more than the model's rope_max_seq_len " + std::to_string(tc.ropeMaxSeqLen));
  };
  withinRope("numFrames", r.numFrames, patchFrames);
  withinRope("height", r.height, r.height / hMult);
  withinRope("width", r.width, r.width / wMult);
  if (r.numVideosPerPrompt < 1 || r.numVideosPerPrompt > 64) throwBadArgument("option 'numVideosPerPrompt' must be 1..64");
  // Every video of a call is one row of the same batch, through the text encoder and each DiT
  // forward: bounded, so that a long prompt list cannot exhaust memory before anything is checked.
  const at::Tensor& rows = r.promptEmbeds.defined() ? r.promptEmbeds : r.promptIds;
  if (rows.defined() && rows.dim() >= 1 && rows.size(0) * r.numVideosPerPrompt > kMaxVideosPerCall)
    throwBadArgument("option 'prompt' asks for " + std::to_string(rows.size(0)) + " prompts x " + std::to_string(r.numVideosPerPrompt) +
                     " videos per prompt; one call generates at most " + std::to_string(kMaxVideosPerCall) + " videos (split the list)");
  if (!std::isfinite(r.guidanceScale) || r.guidanceScale < 0) throwBadArgument("option 'guidanceScale' must be a finite number >= 0");
  if (r.guidanceScale2 && !index_.boundaryRatio)
    throwBadArgument("option 'guidanceScale2' is only for the two-expert A14B models (this folder has no boundary_ratio)");
  if (r.guidanceScale2 && (!std::isfinite(*r.guidanceScale2) || *r.guidanceScale2 < 0)) throwBadArgument("option 'guidanceScale2' must be a finite number >= 0");
  if (family_ == ModelFamily::I2vA14b && !r.image.defined()) throwBadArgument("option 'image' is required by the I2V-A14B model");
  if (family_ == ModelFamily::T2vA14b && r.image.defined()) throwBadArgument("option 'image' is not used by the T2V-A14B model (use I2V-A14B or TI2V-5B)");
  if (!r.promptEmbeds.defined() && !r.promptIds.defined()) throwBadArgument("a prompt (or promptEmbeds) is required");
}

void WanPipeline::updateResidentWeightBytes() {
  int64_t n = experts_->expert(ExpertPair::Expert::High).deviceWeightBytes();
  if (experts_->hasTwoExperts()) n += experts_->expert(ExpertPair::Expert::Low).deviceWeightBytes();
  if (options_.offload == "none") n += vae_->parameterCount() * static_cast<int64_t>(at::elementSize(vae_->dtype()));
  residentWeightBytes_ = n;
}

GenerateResult WanPipeline::generate(const GenerateRequest& r, const RunContext& ctx) {
  GenerateResult out;
  generateInto(r, ctx, out);
  return out;
}

void WanPipeline::generateInto(const GenerateRequest& r, const RunContext& ctx, GenerateResult& out) {
  // Whatever way the generation ends, say what stays on the device after it.
  struct UpdateWhenDone {
    WanPipeline& p;
    ~UpdateWhenDone() { p.updateResidentWeightBytes(); }
  } updateWhenDone{*this};
  out = GenerateResult();
  validate(r);
  const auto start = Clock::now();
  const VaeConfig& vc = vae_->config();
  const TransformerConfig& tc = transformerConfig();
  const at::Device device = options_.device;
  auto scheduler = makeScheduler(scheduler_, r.sampler, r.steps, r.shift);
  out.timesteps = scheduler->timesteps();
  out.sigmas = scheduler->sigmas();
  ActiveExpert activeExpert(options_.offload == "model");
  // With the text encoder in host memory, the first expert's upload overlaps the text encoding
  // (not an image encoding: the VAE would then share the device with the expert).
  const bool i2vA14b = family_ == ModelFamily::I2vA14b;
  const bool ti2vImage = family_ == ModelFamily::Ti2v5b && r.image.defined();
  if (options_.textEncoderDevice.is_cpu() && !i2vA14b && !ti2vImage && !out.timesteps.empty())
    activeExpert.use(experts_->forTimestep(static_cast<double>(out.timesteps.front())));

  // 1. Prompt embeddings [B, 512, D] with rows past each prompt's length zeroed.
  ProgressEvent textEvent;
  textEvent.stage = "encode-text";
  textEvent.step = 0;
  textEvent.totalSteps = 1;
  ctx.progress(textEvent);
  const bool cfg = r.guidanceScale > 1.0;
  if (cfg && !r.negativeEmbeds.defined() && !r.negativeIds.defined())
    throwBadArgument("guidanceScale > 1 needs a negative prompt (or negativePromptEmbeds)");
  std::vector<TokenizedText> texts;  // what the text encoder encodes: the prompt, the negative one
  if (!r.promptEmbeds.defined()) texts.push_back({r.promptIds, r.promptMask});
  if (cfg && !r.negativeEmbeds.defined()) texts.push_back({r.negativeIds, r.negativeMask});
  const std::vector<at::Tensor> encoded = encodeTexts(texts, ctx);
  at::Tensor cond = r.promptEmbeds.defined() ? r.promptEmbeds.to(at::kFloat) : encoded.front();
  const int64_t batch = cond.size(0);
  if (cond.dim() != 3 || cond.size(2) != tc.textDim) throwBadArgument("option 'promptEmbeds' has shape " + shapeString(cond.sizes()) + ", expected [B, L, " + std::to_string(tc.textDim) + "]");
  at::Tensor uncond;
  if (cfg) {
    uncond = r.negativeEmbeds.defined() ? r.negativeEmbeds.to(at::kFloat) : encoded.back();
    requireShape(uncond, cond.sizes().vec(), "negativePromptEmbeds");
  }
  out.promptEmbeds = cond;
  out.negativePromptEmbeds = uncond;
  textEvent.step = 1;
  textEvent.elapsedMs = msSince(start);
  ctx.progress(textEvent);

  const int64_t n = r.numVideosPerPrompt;
  const at::ScalarType dtype = options_.dtype;
  at::Tensor condIn = cond.repeat_interleave(n, 0).to(device, dtype);
  at::Tensor uncondIn = cfg ? uncond.repeat_interleave(n, 0).to(device, dtype) : at::Tensor();
  const int64_t b = batch * n;

  // 2. Initial noise (float32, torch.manual_seed + randn on the CPU generator).
  const int64_t latentFrames = (r.numFrames - 1) / vc.scaleFactorTemporal + 1;
  const int64_t lh = r.height / vc.scaleFactorSpatial, lw = r.width / vc.scaleFactorSpatial;
  const std::vector<int64_t> latentShape{b, vc.zDim, latentFrames, lh, lw};
  at::Tensor latents;
  if (r.latents.defined()) {
    requireShape(r.latents, latentShape, "latents");
    latents = r.latents.to(device, at::kFloat);
  } else {
    latents = randnLikeReference(r.seed, latentShape).to(device);
  }

  // 3. Image conditioning.
  at::Tensor condition;       // I2V-A14B: [b, 4 + z, F', h, w] concatenated to the noise
  at::Tensor firstFrameMask;  // TI2V I2V: [1, 1, F', h, w], 0 on latent frame 0
  if (i2vA14b || ti2vImage) {
    at::Tensor image = r.image.to(at::kFloat);
    if (image.dim() != 4 || image.size(1) != 3 || image.size(2) != r.height || image.size(3) != r.width || (image.size(0) != 1 && image.size(0) != batch))
      throwBadArgument("option 'image' has shape " + shapeString(image.sizes()) + ", expected [1, 3, " + std::to_string(r.height) + ", " + std::to_string(r.width) + "]");
    at::Tensor video = image.unsqueeze(2);
    if (i2vA14b) video = at::cat({video, at::zeros({image.size(0), 3, r.numFrames - 1, r.height, r.width}, video.options())}, 2);
    TilingOptions noTiling;
    Visit<WanVae> visit(*vae_, device);
    at::Tensor latentCondition = vae_->normalize(vae_->encode(video.to(device, options_.vaeDtype), noTiling, &ctx).mean).to(at::kFloat);
    if (latentCondition.size(0) == 1 && b > 1) latentCondition = latentCondition.repeat({b, 1, 1, 1, 1});
    else if (latentCondition.size(0) != b) latentCondition = latentCondition.repeat_interleave(n, 0);
    if (i2vA14b) {
      // Mask: 1 on pixel frame 0 (repeated to fill the first latent frame's 4 slots), 0 elsewhere,
      // folded to 4 channels per latent frame.
      const int64_t st = vc.scaleFactorTemporal;
      at::Tensor mask = at::zeros({b, 1, r.numFrames, lh, lw}, latents.options());
      mask.select(2, 0).fill_(1.0);
      at::Tensor first = mask.narrow(2, 0, 1).repeat_interleave(st, 2);
      mask = at::cat({first, mask.narrow(2, 1, r.numFrames - 1)}, 2);
      mask = mask.view({b, -1, st, lh, lw}).transpose(1, 2);
      condition = at::cat({mask, latentCondition}, 1);
      out.condition = condition;
    } else {
      condition = latentCondition;
      firstFrameMask = at::ones({1, 1, latentFrames, lh, lw}, latents.options());
      firstFrameMask.select(2, 0).fill_(0.0);
      out.condition = latentCondition;
    }
  }

  // 4. Denoise.
  const double guidance2 = r.guidanceScale2.value_or(r.guidanceScale);
  const int64_t steps = static_cast<int64_t>(out.timesteps.size());
  std::vector<at::Tensor> perStep, perStepTimestep;
  at::Tensor tokenMask;  // expand_timesteps: which tokens get t (0 on the image frame)
  if (index_.expandTimesteps) {
    at::Tensor m = ti2vImage ? firstFrameMask : at::ones({1, 1, latentFrames, lh, lw}, latents.options());
    tokenMask = m.select(0, 0).select(0, 0).slice(1, 0, lh, tc.patchSize[1]).slice(2, 0, lw, tc.patchSize[2]).flatten();
  }
  const auto denoiseStart = Clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    ctx.checkCancelled();
    const int64_t t = out.timesteps[i];
    const ExpertPair::Expert expert = experts_->select(static_cast<double>(t));
    const bool low = expert == ExpertPair::Expert::Low;
    WanTransformer& model = experts_->expert(expert);
    activeExpert.use(model);
    const double g = low ? guidance2 : r.guidanceScale;
    out.expertPerStep.push_back(low ? 2 : 1);

    at::Tensor input = latents;
    if (i2vA14b) input = at::cat({latents, condition}, 1);
    else if (ti2vImage) input = (1 - firstFrameMask) * condition + firstFrameMask * latents;
    at::Tensor timestep = index_.expandTimesteps ? (tokenMask * static_cast<double>(t)).unsqueeze(0).expand({b, -1}).contiguous()
                                                 : at::full({b}, t, at::TensorOptions().dtype(at::kLong).device(device));
    // CFG's conditional and unconditional passes in one call: 'sequential' streams each block once for both.
    std::vector<at::Tensor> contexts{condIn};
    if (cfg) contexts.push_back(uncondIn);
    const std::vector<at::Tensor> noises = model.forwardEach(input, timestep, contexts, &ctx);
    if (out.attentionBackend.empty()) out.attentionBackend = model.selfAttentionBackend();
    const at::Tensor noise = cfg ? noises[1] + g * (noises[0] - noises[1]) : noises[0];
    latents = scheduler->step(noise, latents);
    if (r.recordSteps) {
      perStep.push_back(latents.to(at::kCPU));
      perStepTimestep.push_back(timestep.to(at::kCPU, at::kDouble));
    }
    ProgressEvent e;
    e.stage = "denoise";
    e.step = i + 1;
    e.totalSteps = steps;
    e.expert = experts_->name(expert);
    e.timestep = t;
    e.elapsedMs = msSince(start);
    e.etaMs = msSince(denoiseStart) / static_cast<double>(i + 1) * static_cast<double>(steps - i - 1);
    ctx.progress(e);
  }
  activeExpert.release();  // 'model': the decode runs without an expert on the device
  if (options_.offload != "none") releaseCachedDeviceMemory(device);  // ...nor its cached blocks
  if (ti2vImage) latents = (1 - firstFrameMask) * condition + firstFrameMask * latents;
  out.latents = latents;
  if (r.recordSteps && steps > 0) {
    out.latentsPerStep = at::stack(perStep);
    out.modelTimestepPerStep = at::stack(perStepTimestep);
  }

  // 5. Decode.
  if (!r.outputLatents) decodeLatents(latents, r.tiledDecode, r.autoTiledDecode, r.returnFloat, ctx, start, out);
  else reportDone(ctx, start);
}

void WanPipeline::decode(const DecodeRequest& r, const RunContext& ctx, GenerateResult& out) {
  const VaeConfig& vc = vae_->config();
  const at::Tensor& z = r.latents;
  if (!z.defined() || z.dim() != 5 || !at::isFloatingType(z.scalar_type()) || z.size(1) != vc.zDim || z.size(0) < 1 ||
      z.size(0) > kMaxVideosPerCall || z.size(2) < 1 || z.size(3) < 1 || z.size(4) < 1)
    throwBadArgument("latents must be a floating tensor [B, " + std::to_string(vc.zDim) + ", F', H', W'] with 1 <= B <= " +
                     std::to_string(kMaxVideosPerCall) + " (a Video's latents); got " + (z.defined() ? c10::toString(z.scalar_type()) + std::string(" ") + shapeString(z.sizes()) : "none"));
  out = GenerateResult();
  out.latents = z.to(at::kFloat);
  decodeLatents(out.latents.to(options_.device), r.tiledDecode, r.autoTiledDecode, r.returnFloat, ctx, Clock::now(), out);
}

void WanPipeline::decodeLatents(const at::Tensor& latents, bool tiledDecode, bool autoTiledDecode, bool returnFloat, const RunContext& ctx,
                                Clock::time_point start, GenerateResult& out) {
  ctx.checkCancelled();
  at::Tensor video;
  {
    Visit<WanVae> visit(*vae_, options_.device);
    out.decoderInput = vae_->denormalize(latents.to(options_.vaeDtype));
    TilingOptions tiling;
    tiling.mode = tiledDecode ? TilingOptions::Mode::On : (autoTiledDecode ? TilingOptions::Mode::Auto : TilingOptions::Mode::Off);
    // 'sequential' is for GPUs far smaller than the model: its decode tiles unless told not to.
    if (autoTiledDecode && options_.offload == "sequential" && options_.device.is_cuda()) tiling.mode = TilingOptions::Mode::On;
    video = vae_->decode(out.decoderInput, tiling, &ctx);
  }
  // After the VAE's visit (with offload it has left the device): the frames on the worker thread,
  // so the caller gets bytes, 4x less than the float video, with nothing left to convert.
  out.frames = videoToFrames(video);
  if (returnFloat) out.video = video.to(at::kFloat);
  reportDone(ctx, start);
}

}  // namespace wan
