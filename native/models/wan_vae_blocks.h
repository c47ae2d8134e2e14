// The building blocks of the Wan VAE (Diffusers AutoencoderKLWan, 2.1 and 2.2): causal 3D
// convolutions with a per-conv feature cache, RMS norms, residual / attention / resample blocks and
// the encoder and decoder stacks they form. Weight names are the Diffusers ones.
//
// Causality: video is processed in temporal chunks (encode 1, 4, 4, ... frames; decode one latent
// frame at a time). Every causal conv keeps the last two frames of its input (its "cache slot") so
// the next chunk sees the frames before it; the slots are visited in the same order every chunk.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/run_context.h"
#include "core/tensor_io.h"

namespace wan::vae {

using WeightFn = std::function<void(at::Tensor&)>;

// One causal conv's memory of the previous chunk. `repeat` marks a temporal upsampler that has
// seen its first chunk (that chunk bypasses the time conv; Diffusers stores the string "Rep").
struct CacheSlot {
  bool repeat = false;
  at::Tensor frames;
};

class CausalCache {
 public:
  void beginChunk() { next_ = 0; }
  CacheSlot& nextSlot() {
    if (next_ == slots_.size()) slots_.emplace_back();
    return slots_[next_++];
  }

 private:
  std::vector<CacheSlot> slots_;
  size_t next_ = 0;
};

// Shapes and bytes for the analytic memory estimate: each block walks its forward on shapes only.
struct ActShape {
  int64_t channels, frames, height, width;
};
struct MemoryTally {
  int64_t elementBytes = 4;
  int64_t cacheBytes = 0;      // persistent: every conv's cached frames
  int64_t peakTransient = 0;   // the largest set of temporaries alive at once inside one op
  int64_t bytes(int64_t c, int64_t t, int64_t h, int64_t w) const { return c * t * h * w * elementBytes; }
  int64_t bytes(const ActShape& s) const { return bytes(s.channels, s.frames, s.height, s.width); }
  void transient(int64_t b) { peakTransient = std::max(peakTransient, b); }
};

// conv2d / conv3d (by the weight's rank), with oneDNN's direct kernel for float32 on the CPU.
at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding);

// Conv3d whose time axis is padded on the past side only (2*p_t frames of zeros, or cached frames).
struct CausalConv3d {
  at::Tensor weight, bias;
  std::array<int64_t, 3> kernel{1, 1, 1}, stride{1, 1, 1};
  int64_t padTime = 0, padHeight = 0, padWidth = 0;

  void load(WeightSource& w, const std::string& prefix, int64_t in, int64_t out, std::array<int64_t, 3> kernelSize,
            std::array<int64_t, 3> strideSize = {1, 1, 1}, std::array<int64_t, 3> padding = {0, 0, 0});
  // `cache` (may be undefined): frames that precede x; they replace as many zero frames.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cache = at::Tensor()) const;
  int64_t outChannels() const { return weight.size(0); }
  void forEachWeight(const WeightFn& fn) { fn(weight), fn(bias); }
};

// The cached-conv step every block uses: remember x's last two frames (with the previous chunk's
// last frame when x has only one), convolve x after the previous slot content, store the new tail.
at::Tensor cachedConv(const CausalConv3d& conv, const at::Tensor& x, CausalCache& cache);
void estimateCachedConv(const CausalConv3d& conv, ActShape& s, MemoryTally& m, int64_t extraLive);

// x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma (normalized in float32 for bf16/fp16).
struct RmsNorm {
  at::Tensor gamma;  // broadcastable over [B,C,...]
  double scale = 1;
  void load(WeightSource& w, const std::string& name, int64_t channels, int64_t trailingDims);
  at::Tensor forward(const at::Tensor& x) const;
  void forEachWeight(const WeightFn& fn) { fn(gamma); }
};

class Block {
 public:
  virtual ~Block() = default;
  virtual at::Tensor forward(at::Tensor x, CausalCache& cache, bool firstChunk) const = 0;
  virtual void estimate(ActShape& s, MemoryTally& m, bool firstChunk) const = 0;
  // Every weight tensor, for moving them between devices.
  virtual void forEachWeight(const WeightFn& fn) = 0;
};

// norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a 1x1x1 conv shortcut when channels change.
class ResidualBlock : public Block {
 public:
  ResidualBlock(WeightSource& w, const std::string& prefix, int64_t in, int64_t out);
  at::Tensor forward(at::Tensor x, CausalCache& cache, bool firstChunk) const override;
  void estimate(ActShape& s, MemoryTally& m, bool firstChunk) const override;
  void forEachWeight(const WeightFn& fn) override;

 private:
  RmsNorm norm1_, norm2_;
  CausalConv3d conv1_, conv2_, shortcut_;
  bool hasShortcut_;
};

// Single-head self-attention over the pixels of each frame.
class AttentionBlock : public Block {
 public:
  AttentionBlock(WeightSource& w, const std::string& prefix, int64_t dim);
  at::Tensor forward(at::Tensor x, CausalCache& cache, bool firstChunk) const override;
  void estimate(ActShape& s, MemoryTally& m, bool firstChunk) const override;
  void forEachWeight(const WeightFn& fn) override;

 private:
  RmsNorm norm_;
  at::Tensor qkvWeight_, qkvBias_, projWeight_, projBias_;
  int64_t dim_;
};

enum class ResampleMode { Upsample2d, Upsample3d, Downsample2d, Downsample3d };

// 2x spatial up/down sampling per frame, with a causal 2x time conv for the 3d modes.
class Resample : public Block {
 public:
  Resample(WeightSource& w, const std::string& prefix, int64_t dim, ResampleMode mode, int64_t upsampleOut);
  at::Tensor forward(at::Tensor x, CausalCache& cache, bool firstChunk) const override;
  void estimate(ActShape& s, MemoryTally& m, bool firstChunk) const override;
  void forEachWeight(const WeightFn& fn) override;

 private:
  at::Tensor spatial(const at::Tensor& x) const;
  ResampleMode mode_;
  at::Tensor convWeight_, convBias_;
  CausalConv3d timeConv_;
  int64_t dim_, outDim_;
};

// Wan2.2 shortcuts: AvgDown3D averages groups of space-time-to-channel rearranged values; DupUp3D
// repeats channels and rearranges them back to space-time.
at::Tensor avgDown3d(const at::Tensor& x, int64_t outChannels, int64_t factorT, int64_t factorS);
at::Tensor dupUp3d(const at::Tensor& x, int64_t outChannels, int64_t factorT, int64_t factorS, bool firstChunk);

// A list of blocks run in order; optionally with an AvgDown3D / DupUp3D shortcut of the block's
// input added to its output (Wan2.2 residual down / up blocks).
class BlockGroup : public Block {
 public:
  enum class Shortcut { None, AvgDown, DupUp };
  BlockGroup(std::vector<std::unique_ptr<Block>> blocks, Shortcut shortcut, int64_t outChannels, int64_t factorT,
             int64_t factorS)
      : blocks_(std::move(blocks)), shortcut_(shortcut), outChannels_(outChannels), factorT_(factorT), factorS_(factorS) {}
  at::Tensor forward(at::Tensor x, CausalCache& cache, bool firstChunk) const override;
  void estimate(ActShape& s, MemoryTally& m, bool firstChunk) const override;
  void forEachWeight(const WeightFn& fn) override {
    for (auto& b : blocks_) b->forEachWeight(fn);
  }

 private:
  std::vector<std::unique_ptr<Block>> blocks_;
  Shortcut shortcut_;
  int64_t outChannels_, factorT_, factorS_;
};

// conv_in -> down blocks -> mid block -> norm_out -> SiLU -> conv_out (2*z_dim channels).
class Encoder3d {
 public:
  Encoder3d(WeightSource& w, const VaeConfig& c);
  // `ctx`: checked for cancellation between blocks (a frame at a large size takes seconds on a CPU).
  at::Tensor forward(const at::Tensor& x, CausalCache& cache, const RunContext* ctx = nullptr) const;
  void estimate(ActShape s, MemoryTally& m, bool firstChunk) const;
  void forEachWeight(const WeightFn& fn) {
    convIn_.forEachWeight(fn), convOut_.forEachWeight(fn), normOut_.forEachWeight(fn);
    for (auto& b : blocks_) b->forEachWeight(fn);
  }

 private:
  CausalConv3d convIn_, convOut_;
  std::vector<std::unique_ptr<Block>> blocks_;  // down blocks then the mid block's parts
  RmsNorm normOut_;
};

// conv_in -> mid block -> up blocks -> norm_out -> SiLU -> conv_out (out_channels).
class Decoder3d {
 public:
  Decoder3d(WeightSource& w, const VaeConfig& c);
  // `ctx`: checked for cancellation between blocks, as in Encoder3d.
  at::Tensor forward(const at::Tensor& x, CausalCache& cache, bool firstChunk, const RunContext* ctx = nullptr) const;
  void estimate(ActShape s, MemoryTally& m, bool firstChunk) const;
  void forEachWeight(const WeightFn& fn) {
    convIn_.forEachWeight(fn), convOut_.forEachWeight(fn), normOut_.forEachWeight(fn);
    for (auto& b : blocks_) b->forEachWeight(fn);
  }

 private:
  CausalConv3d convIn_, convOut_;
  std::vector<std::unique_ptr<Block>> blocks_;  // the mid block's parts then the up blocks
  RmsNorm normOut_;
};

}  // namespace wan::vae
