#include "wan_vae_blocks.h"

#include <torch/version.h>

#include <cmath>

namespace wan::vae {

namespace {

constexpr int64_t kCacheFrames = 2;

std::string idx(const std::string& prefix, size_t i) { return prefix + "." + std::to_string(i); }

// The last `n` frames of x as their own tensor (never a view that keeps all of x alive).
at::Tensor lastFrames(const at::Tensor& x, int64_t n) {
  int64_t t = x.size(2);
  n = std::min(n, t);
  return x.narrow(2, t - n, n).clone(at::MemoryFormat::Contiguous);
}

}  // namespace

at::Tensor convolution(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding) {
  // libtorch picks its im2col kernels for small float32 CPU inputs: slow, with column buffers many
  // times the activation. oneDNN's direct convolution needs neither.
  if (input.is_cpu() && input.scalar_type() == at::kFloat && at::hasMKLDNN()) {
    std::vector<int64_t> dilation(stride.size(), 1);
    return at::mkldnn_convolution(input.contiguous(), weight.contiguous(), bias, padding, stride, dilation, 1);
  }
  return weight.dim() == 5 ? at::conv3d(input, weight, bias, stride, padding) : at::conv2d(input, weight, bias, stride, padding);
}

// ---- CausalConv3d

void CausalConv3d::load(WeightSource& w, const std::string& prefix, int64_t in, int64_t out,
                        std::array<int64_t, 3> kernelSize, std::array<int64_t, 3> strideSize,
                        std::array<int64_t, 3> padding) {
  weight = w.get(prefix + ".weight", {out, in, kernelSize[0], kernelSize[1], kernelSize[2]});
  bias = w.get(prefix + ".bias", {out});
  kernel = kernelSize;
  stride = strideSize;
  padTime = 2 * padding[0];
  padHeight = padding[1];
  padWidth = padding[2];
}

at::Tensor CausalConv3d::forward(const at::Tensor& x, const at::Tensor& cache) const {
  at::Tensor input = x;
  if (padTime > 0) {
    std::vector<at::Tensor> parts;
    int64_t cached = cache.defined() ? cache.size(2) : 0;
    int64_t zeros = padTime - cached;
    if (zeros > 0) parts.push_back(at::zeros({x.size(0), x.size(1), zeros, x.size(3), x.size(4)}, x.options()));
    if (zeros < 0) parts.push_back(cache.narrow(2, -zeros, padTime));  // never happens with 2-frame caches
    else if (cached > 0) parts.push_back(cache.to(x.device()));
    parts.push_back(x);
    input = at::cat(parts, 2);
  }
  // Zero padding in space is the conv's own padding (the reference pads explicitly; same values).
  const std::array<int64_t, 3> padding{0, padHeight, padWidth};
  return convolution(input, weight, bias, stride, padding);
}

at::Tensor cachedConv(const CausalConv3d& conv, const at::Tensor& x, CausalCache& cache) {
  CacheSlot& slot = cache.nextSlot();
  at::Tensor tail = lastFrames(x, kCacheFrames);
  if (tail.size(2) < kCacheFrames && slot.frames.defined())
    tail = at::cat({slot.frames.narrow(2, slot.frames.size(2) - 1, 1), tail}, 2);
  at::Tensor y = conv.forward(x, slot.frames);
  slot.frames = tail;
  return y;
}

void estimateCachedConv(const CausalConv3d& conv, ActShape& s, MemoryTally& m, int64_t extraLive) {
  m.cacheBytes += m.bytes(s.channels, kCacheFrames, s.height, s.width);
  ActShape out{conv.outChannels(), s.frames, s.height, s.width};
  int64_t padded = m.bytes(s.channels, s.frames + conv.padTime, s.height, s.width);
  // input + padded copy + output, and as much again for the backend's layout copies / workspace,
  // plus a reordered copy of the weight (oneDNN's blocked layout)
  const int64_t weightCopy = conv.weight.numel() * m.elementBytes;
  m.transient(extraLive + m.bytes(s) + 2 * padded + 2 * m.bytes(out) + weightCopy);
  s = out;
}

// ---- RmsNorm

void RmsNorm::load(WeightSource& w, const std::string& name, int64_t channels, int64_t trailingDims) {
  std::vector<int64_t> shape{channels};
  for (int64_t i = 0; i < trailingDims; ++i) shape.push_back(1);
  gamma = w.get(name, shape);
  scale = std::sqrt(static_cast<double>(channels));
}

at::Tensor RmsNorm::forward(const at::Tensor& x) const {
  bool lowPrecision = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  at::Tensor xf = lowPrecision ? x.to(at::kFloat) : x;
  at::Tensor denom = at::norm(xf, 2, {1}, /*keepdim=*/true).clamp_min_(1e-12);
  at::Tensor n = xf.div(denom);
  if (lowPrecision) n = n.to(x.scalar_type());
  n.mul_(scale);
  n.mul_(gamma);
  return n;
}

// ---- ResidualBlock

ResidualBlock::ResidualBlock(WeightSource& w, const std::string& prefix, int64_t in, int64_t out) {
  norm1_.load(w, prefix + ".norm1.gamma", in, 3);
  conv1_.load(w, prefix + ".conv1", in, out, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  norm2_.load(w, prefix + ".norm2.gamma", out, 3);
  conv2_.load(w, prefix + ".conv2", out, out, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  hasShortcut_ = in != out;
  if (hasShortcut_) shortcut_.load(w, prefix + ".conv_shortcut", in, out, {1, 1, 1});
}

at::Tensor ResidualBlock::forward(at::Tensor x, CausalCache& cache, bool) const {
  at::Tensor h = hasShortcut_ ? shortcut_.forward(x) : x;
  at::Tensor y = norm1_.forward(x);
  x.reset();  // with a shortcut the input is no longer needed
  at::silu_(y);
  y = cachedConv(conv1_, y, cache);
  y = norm2_.forward(y);
  at::silu_(y);
  y = cachedConv(conv2_, y, cache);
  y.add_(h);
  return y;
}

void ResidualBlock::estimate(ActShape& s, MemoryTally& m, bool) const {
  ActShape hShape{conv2_.outChannels(), s.frames, s.height, s.width};
  int64_t h = m.bytes(hasShortcut_ ? hShape : s);
  m.transient(m.bytes(s) * 2 + h);  // input, its norm, the shortcut
  estimateCachedConv(conv1_, s, m, h);
  estimateCachedConv(conv2_, s, m, h);
}

// ---- AttentionBlock

void ResidualBlock::forEachWeight(const WeightFn& fn) {
  norm1_.forEachWeight(fn), norm2_.forEachWeight(fn), conv1_.forEachWeight(fn), conv2_.forEachWeight(fn);
  if (hasShortcut_) shortcut_.forEachWeight(fn);
}

AttentionBlock::AttentionBlock(WeightSource& w, const std::string& prefix, int64_t dim) : dim_(dim) {
  norm_.load(w, prefix + ".norm.gamma", dim, 2);
  qkvWeight_ = w.get(prefix + ".to_qkv.weight", {3 * dim, dim, 1, 1});
  qkvBias_ = w.get(prefix + ".to_qkv.bias", {3 * dim});
  projWeight_ = w.get(prefix + ".proj.weight", {dim, dim, 1, 1});
  projBias_ = w.get(prefix + ".proj.bias", {dim});
}

namespace {
// Rows of queries per pass of the non-fused attention: bounds the score matrix to ~256 MB.
int64_t queryRowsPerPass(int64_t keys) { return std::max<int64_t>(1, (int64_t(64) << 20) / std::max<int64_t>(keys, 1)); }
}  // namespace

at::Tensor AttentionBlock::forward(at::Tensor x, CausalCache&, bool) const {
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2), hgt = x.size(3), wid = x.size(4), pixels = hgt * wid;
  at::Tensor frames = x.permute({0, 2, 1, 3, 4}).reshape({b * t, c, hgt, wid});
  at::Tensor qkv = convolution(norm_.forward(frames), qkvWeight_, qkvBias_, {1, 1}, {0, 0});
  frames.reset();
  // [BT, pixels, 3C], contiguous so q, k and v have unit stride along C: SDPA's fused (memory-
  // efficient) kernels refuse anything else and would leave the math backend, with its full
  // pixels x pixels score matrix, as the reference (which makes it contiguous too) never does.
  qkv = qkv.reshape({b * t, 3 * c, pixels}).permute({0, 2, 1}).contiguous();
  at::Tensor q = qkv.narrow(2, 0, c), k = qkv.narrow(2, c, c), v = qkv.narrow(2, 2 * c, c);
  at::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  out = at::scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1);
#else
  out = at::empty({b * t, pixels, c}, q.options());
  const double scale = 1.0 / std::sqrt(static_cast<double>(c));
  at::Tensor kT = k.transpose(1, 2);
  const int64_t rows = queryRowsPerPass(pixels);
  for (int64_t r = 0; r < pixels; r += rows) {
    int64_t n = std::min(rows, pixels - r);
    at::Tensor scores = at::matmul(q.narrow(1, r, n), kT).mul_(scale);
    at::Tensor probs = at::softmax(scores.to(at::kFloat), -1).to(q.scalar_type());
    out.narrow(1, r, n).copy_(at::matmul(probs, v));
  }
#endif
  qkv.reset();
  out = convolution(out.permute({0, 2, 1}).reshape({b * t, c, hgt, wid}), projWeight_, projBias_, {1, 1}, {0, 0});
  out = out.view({b, t, c, hgt, wid}).permute({0, 2, 1, 3, 4}).contiguous();
  out.add_(x);
  return out;
}

void AttentionBlock::estimate(ActShape& s, MemoryTally& m, bool) const {
  int64_t pixels = s.height * s.width;
  int64_t scores = std::min(queryRowsPerPass(pixels), pixels) * pixels * s.frames * 4 * 2;
  m.transient(m.bytes(s) * 8 + scores);
}

// ---- Resample

void AttentionBlock::forEachWeight(const WeightFn& fn) {
  norm_.forEachWeight(fn);
  fn(qkvWeight_), fn(qkvBias_), fn(projWeight_), fn(projBias_);
}

Resample::Resample(WeightSource& w, const std::string& prefix, int64_t dim, ResampleMode mode, int64_t upsampleOut)
    : mode_(mode), dim_(dim) {
  bool up = mode == ResampleMode::Upsample2d || mode == ResampleMode::Upsample3d;
  outDim_ = up ? upsampleOut : dim;
  convWeight_ = w.get(prefix + ".resample.1.weight", {outDim_, dim, 3, 3});
  convBias_ = w.get(prefix + ".resample.1.bias", {outDim_});
  if (mode == ResampleMode::Upsample3d) timeConv_.load(w, prefix + ".time_conv", dim, dim * 2, {3, 1, 1}, {1, 1, 1}, {1, 0, 0});
  if (mode == ResampleMode::Downsample3d) timeConv_.load(w, prefix + ".time_conv", dim, dim, {3, 1, 1}, {2, 1, 1}, {0, 0, 0});
}

void Resample::forEachWeight(const WeightFn& fn) {
  fn(convWeight_), fn(convBias_);
  if (timeConv_.weight.defined()) timeConv_.forEachWeight(fn);
}

// The 2D part, one frame at a time (bounds the temporaries to one frame at the larger size).
at::Tensor Resample::spatial(const at::Tensor& x) const {
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  bool up = mode_ == ResampleMode::Upsample2d || mode_ == ResampleMode::Upsample3d;
  at::Tensor out;
  for (int64_t i = 0; i < t; ++i) {
    at::Tensor f = x.select(2, i);
    if (up) {
      // nearest(-exact) 2x = each pixel repeated 2x2
      f = f.unsqueeze(3).unsqueeze(5).expand({b, c, h, 2, w, 2}).reshape({b, c, 2 * h, 2 * w});
      f = convolution(f, convWeight_, convBias_, {1, 1}, {1, 1});
    } else {
      f = at::constant_pad_nd(f, {0, 1, 0, 1}, 0);
      f = convolution(f, convWeight_, convBias_, {2, 2}, {0, 0});
    }
    if (!out.defined()) out = at::empty({b, f.size(1), t, f.size(2), f.size(3)}, f.options());
    out.select(2, i).copy_(f);
  }
  return out;
}

at::Tensor Resample::forward(at::Tensor x, CausalCache& cache, bool) const {
  if (mode_ == ResampleMode::Upsample3d) {
    CacheSlot& slot = cache.nextSlot();
    if (!slot.repeat && !slot.frames.defined()) {
      slot.repeat = true;  // first chunk: one frame stays one frame
    } else {
      const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
      at::Tensor tail = lastFrames(x, kCacheFrames);
      if (tail.size(2) < kCacheFrames) {
        at::Tensor before = slot.frames.defined() ? slot.frames.narrow(2, slot.frames.size(2) - 1, 1) : at::zeros_like(tail);
        tail = at::cat({before, tail}, 2);
      }
      at::Tensor y = timeConv_.forward(x, slot.frames);  // no frames yet (after the first chunk): zeros
      slot.repeat = false;
      slot.frames = tail;
      // [b, 2c, t] -> frames interleaved: output frame 2i+j = channel block j of frame i
      x = y.view({b, 2, c, t, h, w}).permute({0, 2, 3, 1, 4, 5}).reshape({b, c, 2 * t, h, w});
    }
  }
  x = spatial(x);
  if (mode_ == ResampleMode::Downsample3d) {
    CacheSlot& slot = cache.nextSlot();
    if (!slot.frames.defined()) {
      slot.frames = x.clone();  // first chunk: kept as is, remembered
    } else {
      at::Tensor tail = lastFrames(x, 1);
      x = timeConv_.forward(at::cat({slot.frames.narrow(2, slot.frames.size(2) - 1, 1), x}, 2));
      slot.frames = tail;
    }
  }
  return x;
}

void Resample::estimate(ActShape& s, MemoryTally& m, bool firstChunk) const {
  if (mode_ == ResampleMode::Upsample3d) {
    m.cacheBytes += m.bytes(s.channels, kCacheFrames, s.height, s.width);
    if (!firstChunk) {
      ActShape y{2 * s.channels, s.frames, s.height, s.width};
      m.transient(m.bytes(s) + 2 * m.bytes(s.channels, s.frames + 2, s.height, s.width) + 3 * m.bytes(y));
      s.frames *= 2;
    }
  }
  bool up = mode_ == ResampleMode::Upsample2d || mode_ == ResampleMode::Upsample3d;
  ActShape out{outDim_, s.frames, up ? 2 * s.height : s.height / 2, up ? 2 * s.width : s.width / 2};
  ActShape frameIn{s.channels, 1, up ? out.height : s.height + 1, up ? out.width : s.width + 1};
  ActShape frameOut{outDim_, 1, out.height, out.width};
  m.transient(m.bytes(s) + m.bytes(out) + m.bytes(frameIn) + 2 * m.bytes(frameOut));
  s = out;
  if (mode_ == ResampleMode::Downsample3d) {
    m.cacheBytes += m.bytes(s.channels, 1, s.height, s.width);
    if (!firstChunk) {
      ActShape y{s.channels, s.frames / 2, s.height, s.width};
      m.transient(m.bytes(s) + 2 * m.bytes(s.channels, s.frames + 1, s.height, s.width) + 2 * m.bytes(y));
      s = y;
    }
  }
}

// ---- Wan2.2 shortcuts

at::Tensor avgDown3d(const at::Tensor& input, int64_t outChannels, int64_t factorT, int64_t factorS) {
  at::Tensor x = input;
  int64_t padT = (factorT - x.size(2) % factorT) % factorT;
  if (padT > 0) x = at::constant_pad_nd(x, {0, 0, 0, 0, padT, 0}, 0);  // zeros before the first frame
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2) / factorT, h = x.size(3) / factorS, w = x.size(4) / factorS;
  const int64_t factor = factorT * factorS * factorS;
  x = x.reshape({b, c, t, factorT, h, factorS, w, factorS}).permute({0, 1, 3, 5, 7, 2, 4, 6});
  // channels ordered (c, ft, fh, fw), grouped consecutively into outChannels groups
  return x.reshape({b, outChannels, c * factor / outChannels, t, h, w}).mean(2);
}

at::Tensor dupUp3d(const at::Tensor& x, int64_t outChannels, int64_t factorT, int64_t factorS, bool firstChunk) {
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  const int64_t factor = factorT * factorS * factorS;
  at::Tensor y = x.repeat_interleave(outChannels * factor / c, 1);
  y = y.view({b, outChannels, factorT, factorS, factorS, t, h, w}).permute({0, 1, 5, 2, 6, 3, 7, 4});
  y = y.reshape({b, outChannels, t * factorT, h * factorS, w * factorS});
  if (firstChunk) y = y.narrow(2, factorT - 1, y.size(2) - (factorT - 1));
  return y;
}

// ---- BlockGroup

at::Tensor BlockGroup::forward(at::Tensor x, CausalCache& cache, bool firstChunk) const {
  at::Tensor input = shortcut_ == Shortcut::None ? at::Tensor() : x;
  for (const auto& block : blocks_) x = block->forward(std::move(x), cache, firstChunk);
  if (shortcut_ == Shortcut::AvgDown) x.add_(avgDown3d(input, outChannels_, factorT_, factorS_));
  if (shortcut_ == Shortcut::DupUp) x.add_(dupUp3d(input, outChannels_, factorT_, factorS_, firstChunk));
  return x;
}

void BlockGroup::estimate(ActShape& s, MemoryTally& m, bool firstChunk) const {
  ActShape in = s;
  MemoryTally inner = m;
  inner.peakTransient = 0;
  for (const auto& block : blocks_) block->estimate(s, inner, firstChunk);
  m.cacheBytes = inner.cacheBytes;
  int64_t held = shortcut_ == Shortcut::None ? 0 : m.bytes(in);
  m.transient(inner.peakTransient + held);
  if (shortcut_ != Shortcut::None) m.transient(held + 3 * m.bytes(s));  // the shortcut's rearranged copies
}

// ---- Encoder / Decoder

Encoder3d::Encoder3d(WeightSource& w, const VaeConfig& c) {
  const int64_t levels = static_cast<int64_t>(c.dimMult.size());
  std::vector<int64_t> dims{c.baseDim};
  for (auto m : c.dimMult) dims.push_back(c.baseDim * m);
  convIn_.load(w, "encoder.conv_in", c.inChannels, dims[0], {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  double scale = 1.0;
  size_t flat = 0;  // Wan2.1 numbers its down blocks in one flat list
  for (int64_t i = 0; i < levels; ++i) {
    int64_t in = dims[i], out = dims[i + 1];
    bool last = i == levels - 1;
    if (c.isResidual) {
      std::string prefix = idx("encoder.down_blocks", i);
      bool temporal = !last && c.temporalDownsample[i];
      std::vector<std::unique_ptr<Block>> parts;
      int64_t cur = in;
      for (int64_t r = 0; r < c.numResBlocks; ++r, cur = out)
        parts.push_back(std::make_unique<ResidualBlock>(w, idx(prefix + ".resnets", r), cur, out));
      if (!last)
        parts.push_back(std::make_unique<Resample>(w, prefix + ".downsampler", out,
                                                   temporal ? ResampleMode::Downsample3d : ResampleMode::Downsample2d, out));
      blocks_.push_back(std::make_unique<BlockGroup>(std::move(parts), BlockGroup::Shortcut::AvgDown, out, temporal ? 2 : 1,
                                                     last ? 1 : 2));
    } else {
      int64_t cur = in;
      for (int64_t r = 0; r < c.numResBlocks; ++r, cur = out) {
        blocks_.push_back(std::make_unique<ResidualBlock>(w, idx("encoder.down_blocks", flat++), cur, out));
        for (double a : c.attnScales)
          if (a == scale) {
            blocks_.push_back(std::make_unique<AttentionBlock>(w, idx("encoder.down_blocks", flat++), out));
            break;
          }
      }
      if (!last) {
        blocks_.push_back(std::make_unique<Resample>(w, idx("encoder.down_blocks", flat++), out,
                                                     c.temporalDownsample[i] ? ResampleMode::Downsample3d : ResampleMode::Downsample2d, out));
        scale /= 2.0;
      }
    }
  }
  const int64_t top = dims.back();
  blocks_.push_back(std::make_unique<ResidualBlock>(w, "encoder.mid_block.resnets.0", top, top));
  blocks_.push_back(std::make_unique<AttentionBlock>(w, "encoder.mid_block.attentions.0", top));
  blocks_.push_back(std::make_unique<ResidualBlock>(w, "encoder.mid_block.resnets.1", top, top));
  normOut_.load(w, "encoder.norm_out.gamma", top, 3);
  convOut_.load(w, "encoder.conv_out", top, 2 * c.zDim, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
}

at::Tensor Encoder3d::forward(const at::Tensor& input, CausalCache& cache, const RunContext* ctx) const {
  cache.beginChunk();
  at::Tensor x = cachedConv(convIn_, input, cache);
  for (const auto& block : blocks_) {
    if (ctx) ctx->checkCancelled();
    x = block->forward(std::move(x), cache, false);
  }
  x = normOut_.forward(x);
  at::silu_(x);
  return cachedConv(convOut_, x, cache);
}

void Encoder3d::estimate(ActShape s, MemoryTally& m, bool firstChunk) const {
  estimateCachedConv(convIn_, s, m, 0);
  for (const auto& block : blocks_) block->estimate(s, m, firstChunk);
  m.transient(2 * m.bytes(s));
  estimateCachedConv(convOut_, s, m, 0);
}

Decoder3d::Decoder3d(WeightSource& w, const VaeConfig& c) {
  const int64_t levels = static_cast<int64_t>(c.dimMult.size());
  const int64_t d = c.decoderBaseDim;
  std::vector<int64_t> dims{d * c.dimMult.back()};
  for (auto it = c.dimMult.rbegin(); it != c.dimMult.rend(); ++it) dims.push_back(d * *it);
  std::vector<bool> temporalUp(c.temporalDownsample.rbegin(), c.temporalDownsample.rend());

  convIn_.load(w, "decoder.conv_in", c.zDim, dims[0], {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  blocks_.push_back(std::make_unique<ResidualBlock>(w, "decoder.mid_block.resnets.0", dims[0], dims[0]));
  blocks_.push_back(std::make_unique<AttentionBlock>(w, "decoder.mid_block.attentions.0", dims[0]));
  blocks_.push_back(std::make_unique<ResidualBlock>(w, "decoder.mid_block.resnets.1", dims[0], dims[0]));
  for (int64_t i = 0; i < levels; ++i) {
    int64_t in = dims[i], out = dims[i + 1];
    if (i > 0 && !c.isResidual) in /= 2;  // Wan2.1 upsamplers halve the channels
    bool up = i != levels - 1;
    bool temporal = up && temporalUp[i];
    std::string prefix = idx("decoder.up_blocks", i);
    std::vector<std::unique_ptr<Block>> parts;
    int64_t cur = in;
    for (int64_t r = 0; r <= c.numResBlocks; ++r, cur = out)
      parts.push_back(std::make_unique<ResidualBlock>(w, idx(prefix + ".resnets", r), cur, out));
    if (up) {
      ResampleMode mode = temporal ? ResampleMode::Upsample3d : ResampleMode::Upsample2d;
      if (c.isResidual)
        parts.push_back(std::make_unique<Resample>(w, prefix + ".upsampler", out, mode, out));
      else
        parts.push_back(std::make_unique<Resample>(w, prefix + ".upsamplers.0", out, mode, out / 2));
    }
    BlockGroup::Shortcut shortcut = c.isResidual && up ? BlockGroup::Shortcut::DupUp : BlockGroup::Shortcut::None;
    blocks_.push_back(std::make_unique<BlockGroup>(std::move(parts), shortcut, out, temporal ? 2 : 1, 2));
  }
  normOut_.load(w, "decoder.norm_out.gamma", dims.back(), 3);
  convOut_.load(w, "decoder.conv_out", dims.back(), c.outChannels, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
}

at::Tensor Decoder3d::forward(const at::Tensor& input, CausalCache& cache, bool firstChunk, const RunContext* ctx) const {
  cache.beginChunk();
  at::Tensor x = cachedConv(convIn_, input, cache);
  for (const auto& block : blocks_) {
    if (ctx) ctx->checkCancelled();
    x = block->forward(std::move(x), cache, firstChunk);
  }
  x = normOut_.forward(x);
  at::silu_(x);
  return cachedConv(convOut_, x, cache);
}

void Decoder3d::estimate(ActShape s, MemoryTally& m, bool firstChunk) const {
  estimateCachedConv(convIn_, s, m, 0);
  for (const auto& block : blocks_) block->estimate(s, m, firstChunk);
  m.transient(2 * m.bytes(s));
  estimateCachedConv(convOut_, s, m, 0);
}

}  // namespace wan::vae
