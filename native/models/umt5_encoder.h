// The UMT5 encoder (umt5-xxl in the real checkpoints) that turns prompt token ids into the text
// embeddings the Wan DiT cross-attends to. Weights use transformers' UMT5EncoderModel names.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/weight_transfer.h"
#include "core/run_context.h"
#include "core/tensor_io.h"

namespace wan {

class Umt5Encoder {
 public:
  // Takes every tensor it needs from `weights`; the caller calls weights.finish() afterwards.
  // Precision follows transformers: weights in the source's dtype except the FFN output
  // projections `wo` (kept in float32 as UMT5's _keep_in_fp32_modules asks).
  Umt5Encoder(const TextEncoderConfig& config, WeightSource& weights);

  // A Diffusers `text_encoder/` folder: config.json + safetensors (single file or sharded). `ctx`
  // (may be null) is checked for cancellation before each tensor.
  static std::unique_ptr<Umt5Encoder> load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx = nullptr);

  // ids: integer [B, L] in [0, vocab); mask: [B, L], >0 for real tokens (each row needs one).
  // Returns last_hidden_state as float32 [B, L, d_model] on the model's device, for all L
  // positions (padding included; see zeroPastPromptLengths for the pipeline's rule).
  at::Tensor encode(const at::Tensor& ids, const at::Tensor& mask, const RunContext* ctx = nullptr) const;

  const TextEncoderConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  int64_t parameterCount() const;
  // Moves every weight to `device`.
  void to(at::Device device);
  // Puts a copy of every weight on `device` and keeps the current ones; leave() drops the copy and
  // computes where the weights were. No copy back: weights do not change.
  void visit(at::Device device);
  void leave();

 private:
  void forEachWeight(const std::function<void(at::Tensor&)>& fn);
  struct Layer {
    at::Tensor attentionNorm, q, k, v, o, relativeAttentionBias;
    at::Tensor ffnNorm, wi0, wi1, wo;
  };

  at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight) const;
  at::Tensor selfAttention(const Layer& layer, const at::Tensor& x, const at::Tensor& buckets, const at::Tensor& keyMaskBias) const;
  at::Tensor feedForward(const Layer& layer, const at::Tensor& x) const;

  TextEncoderConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  DeviceVisit visit_;
  at::Tensor embedTokens;  // [vocab, d_model]
  std::vector<Layer> layers;
  at::Tensor finalNorm;
};

// T5 relative-position buckets [L, L] (int64, CPU) of key j seen from query i, bidirectional, as
// the reference computes them (log-spaced buckets in float32 beyond num_buckets/4).
at::Tensor relativePositionBuckets(int64_t length, int64_t numBuckets, int64_t maxDistance);

// The pipeline's rule (WanPipeline._get_t5_prompt_embeds): each prompt's real length is its mask's
// count of real tokens; rows at and beyond it become exactly zero.
at::Tensor zeroPastPromptLengths(const at::Tensor& hidden, const at::Tensor& mask);

}  // namespace wan
