// The Wan VAE (Diffusers AutoencoderKLWan): the Wan2.1 VAE (z 16, 8x spatial) and the Wan2.2 VAE
// (z 48, 2x2 patchify + 8x = 16x spatial, residual shortcuts), chosen by vae/config.json.
//
// encode: video [B,3,F,H,W] in [-1,1], F = 4k+1 -> posterior mean / logvar [B,z,(F-1)/4+1,H/s,W/s]
//         (causal temporal chunks 1, 4, 4, ...).
// decode: de-normalized latents -> video [B,3,F,H,W] clamped to [-1,1] (one latent frame at a time).
// normalize / denormalize: the pipelines' latent space, (mu - mean) * (1/std) and its inverse.
//
// Memory: activations are bounded by one temporal chunk plus every conv's two cached frames; spatial
// tiling (off by default: it changes results slightly) bounds them further to one tile.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "core/model_config.h"
#include "core/run_context.h"
#include "core/tensor_io.h"
#include "core/weight_transfer.h"
#include "wan_vae_blocks.h"

namespace wan {

struct TilingOptions {
  enum class Mode { Off, On, Auto };
  Mode mode = Mode::Off;
  // Tile size and overlap in output pixels (multiples of the VAE's spatial factor).
  int64_t tileSize = 256;
  int64_t tileOverlap = 64;
};

struct VaeEncoding {
  at::Tensor mean, logvar;  // float32 on the model's device; logvar clamped to [-30, 20]
};

class WanVae {
 public:
  // `dir` holds config.json and the safetensors (one file or sharded). `ctx` (may be null) is
  // checked for cancellation before each tensor.
  static std::unique_ptr<WanVae> load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx = nullptr);
  // Any weight source, e.g. RandomWeights at a real config for memory measurements.
  WanVae(const VaeConfig& config, WeightSource& weights);

  VaeEncoding encode(const at::Tensor& video, const TilingOptions& tiling = {}, const RunContext* ctx = nullptr) const;
  // Latents as decode() takes them back into the pipeline's normalized space, and the inverse.
  at::Tensor normalize(const at::Tensor& mean) const;
  at::Tensor denormalize(const at::Tensor& latents) const;
  // De-normalized latents -> float32 video on the CPU (frames are moved off the device as they are
  // decoded, so the device never holds the whole video).
  at::Tensor decode(const at::Tensor& denormalizedLatents, const TilingOptions& tiling = {}, const RunContext* ctx = nullptr) const;

  // Bytes of activations (caches + the largest temporaries + the result) that decode / encode of
  // that shape needs beyond the weights, in the model's dtype. Analytic; see bench/RESULTS.md.
  int64_t estimateDecodeBytes(const std::vector<int64_t>& latentShape, bool tiled, const TilingOptions& tiling = {}) const;
  int64_t estimateEncodeBytes(const std::vector<int64_t>& videoShape, bool tiled, const TilingOptions& tiling = {}) const;
  // Whether a call with these options tiles (resolves 'auto' against the device's free memory).
  bool decodeTiles(const std::vector<int64_t>& latentShape, const TilingOptions& tiling) const;
  bool encodeTiles(const std::vector<int64_t>& videoShape, const TilingOptions& tiling) const;

  const VaeConfig& config() const { return config_; }
  std::string version() const { return config_.isResidual ? "2.2" : "2.1"; }
  int64_t parameterCount() const { return parameterCount_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  // Puts a copy of every weight on `device` and keeps the current ones; leave() drops the copy and
  // computes where the weights were (the offload modes: the VAE visits the GPU to encode or decode).
  void visit(at::Device device);
  void leave();
  // Every weight tensor (and the latent normalization constants), for moving them between devices.
  void forEachWeight(const vae::WeightFn& fn);

 private:
  void checkTiling(const TilingOptions& t) const;
  at::Tensor encodeWhole(const at::Tensor& x, const RunContext* ctx, int64_t tile, int64_t tiles) const;
  at::Tensor encodeTiled(const at::Tensor& x, const TilingOptions& t, const RunContext* ctx) const;
  void decodeInto(const at::Tensor& z, at::Tensor& out, const RunContext* ctx, int64_t tile, int64_t tiles) const;
  at::Tensor decodeTiled(const at::Tensor& z, const TilingOptions& t, const RunContext* ctx) const;
  at::Tensor patchify(const at::Tensor& x) const;
  at::Tensor unpatchify(const at::Tensor& x) const;

  VaeConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  int64_t parameterCount_ = 0;
  std::unique_ptr<vae::Encoder3d> encoder_;
  std::unique_ptr<vae::Decoder3d> decoder_;
  vae::CausalConv3d quantConv_, postQuantConv_;
  at::Tensor latentsMean_, latentsInvStd_;  // float32 [1,z,1,1,1] on the device
  DeviceVisit visit_;
};

// Bytes free for new allocations on `device`: CUDA free memory, or MemAvailable on the CPU.
int64_t freeDeviceBytes(at::Device device);

}  // namespace wan
