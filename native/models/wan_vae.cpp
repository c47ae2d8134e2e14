#include "wan_vae.h"

#include <chrono>
#include <fstream>

#include "core/errors.h"

#ifdef WAN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace wan {

namespace {

// Counts the parameters a model takes from its weight source.
class CountingSource : public WeightSource {
 public:
  explicit CountingSource(WeightSource& inner) : inner_(inner) {}
  bool has(const std::string& name) const override { return inner_.has(name); }
  using WeightSource::get;
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    at::Tensor t = inner_.get(name, shape, dtype);
    count += t.numel();
    return t;
  }
  void finish() const override { inner_.finish(); }
  at::ScalarType dtype() const override { return inner_.dtype(); }
  at::Device device() const override { return inner_.device(); }
  int64_t count = 0;

 private:
  WeightSource& inner_;
};


int64_t elementBytes(at::ScalarType t) { return static_cast<int64_t>(c10::elementSize(t)); }

class Clock {
 public:
  double ms() const { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void report(const RunContext* ctx, const char* stage, int64_t step, int64_t total, const Clock& clock) {
  if (!ctx) return;
  ProgressEvent e;
  e.stage = stage;
  e.step = step;
  e.totalSteps = total;
  e.elapsedMs = clock.ms();
  e.etaMs = step > 0 ? e.elapsedMs / static_cast<double>(step) * static_cast<double>(total - step) : -1;
  ctx->progress(e);
}

void checkCancelled(const RunContext* ctx) {
  if (ctx) ctx->checkCancelled();
}

// Streams tiles (in row-major order) into `out`, blending each with the tile above and the one to
// its left exactly as Diffusers' tiled_encode / tiled_decode do (including that the neighbours are
// the already-blended tiles), but keeping only the overlapping strips of the neighbours.
class TileBlender {
 public:
  TileBlender(at::Tensor out, int64_t stride, int64_t blend, int64_t columns)
      : out_(std::move(out)), stride_(stride), blend_(blend), above_(columns), aboveHeight_(columns, 0) {}

  void add(int64_t row, int64_t col, at::Tensor tile) {
    const int64_t h = tile.size(3), w = tile.size(4);
    if (row > 0) {
      int64_t extent = std::min({aboveHeight_[col], h, blend_});
      if (extent > 0) {
        const at::Tensor& a = above_[col];
        at::Tensor weight = ramp(extent, tile).view({1, 1, 1, extent, 1});
        at::Tensor b = tile.narrow(3, 0, extent);
        b.copy_(a.narrow(3, a.size(3) - extent, extent) * (1 - weight) + b * weight);
      }
    }
    if (col > 0) {
      int64_t extent = std::min({leftWidth_, w, blend_});
      if (extent > 0) {
        at::Tensor weight = ramp(extent, tile).view({1, 1, 1, 1, extent});
        at::Tensor b = tile.narrow(4, 0, extent);
        b.copy_(left_.narrow(4, left_.size(4) - extent, extent) * (1 - weight) + b * weight);
      }
    }
    above_[col] = tile.narrow(3, h - std::min(h, blend_), std::min(h, blend_)).clone();
    aboveHeight_[col] = h;
    left_ = tile.narrow(4, w - std::min(w, blend_), std::min(w, blend_)).clone();
    leftWidth_ = w;
    const int64_t y0 = row * stride_, x0 = col * stride_;
    const int64_t rows = std::min({stride_, h, out_.size(3) - y0}), cols = std::min({stride_, w, out_.size(4) - x0});
    if (rows > 0 && cols > 0) out_.narrow(3, y0, rows).narrow(4, x0, cols).copy_(tile.narrow(3, 0, rows).narrow(4, 0, cols));
  }

 private:
  // y / extent for y = 0..extent-1 (the weight of the current tile)
  static at::Tensor ramp(int64_t extent, const at::Tensor& like) {
    return at::arange(extent, like.options().dtype(at::kDouble)).div_(static_cast<double>(extent)).to(like.scalar_type());
  }
  at::Tensor out_;
  int64_t stride_, blend_;
  std::vector<at::Tensor> above_;
  std::vector<int64_t> aboveHeight_;
  at::Tensor left_;
  int64_t leftWidth_ = 0;
};

// The estimates add 1/5 for allocator fragmentation and backend workspaces the shape walk does not
// see (measured: the walk alone is within a few % of the CPU peak, see bench/RESULTS.md).
constexpr int64_t kEstimateMargin = 5;

int64_t tileCount(int64_t size, int64_t stride) { return (size + stride - 1) / stride; }

}  // namespace

int64_t freeDeviceBytes(at::Device device) {
#ifdef WAN_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::emptyCache();  // cached blocks count as free for us
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device.index() < 0 ? 0 : device.index());
    size_t freeBytes = 0, totalBytes = 0;
    cudaMemGetInfo(&freeBytes, &totalBytes);
    cudaSetDevice(previous);
    return static_cast<int64_t>(freeBytes);
  }
#endif
  (void)device;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return int64_t(1) << 62;  // unknown: assume it fits
}

std::unique_ptr<WanVae> WanVae::load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx) {
  VaeConfig config = readVaeConfig(dir + "/config.json");
  WeightLoader weights(TensorStore::openFolder(dir), dtype, device, ctx);
  auto vae = std::make_unique<WanVae>(config, weights);
  weights.finish();
  return vae;
}

WanVae::WanVae(const VaeConfig& config, WeightSource& weights)
    : config_(config), dtype_(weights.dtype()), device_(weights.device()) {
  int64_t temporal = 0;
  for (bool t : config.temporalDownsample) temporal += t ? 1 : 0;
  int64_t spatial = (int64_t(1) << (config.dimMult.size() - 1)) * config.patchSize;
  if ((int64_t(1) << temporal) != config.scaleFactorTemporal)
    throwBadCheckpoint("vae config: scale_factor_temporal " + std::to_string(config.scaleFactorTemporal) +
                       " does not match temperal_downsample (2^" + std::to_string(temporal) + ")");
  if (spatial != config.scaleFactorSpatial)
    throwBadCheckpoint("vae config: scale_factor_spatial " + std::to_string(config.scaleFactorSpatial) +
                       " does not match dim_mult and patch_size (" + std::to_string(spatial) + ")");
  CountingSource w(weights);
  encoder_ = std::make_unique<vae::Encoder3d>(w, config);
  quantConv_.load(w, "quant_conv", 2 * config.zDim, 2 * config.zDim, {1, 1, 1});
  postQuantConv_.load(w, "post_quant_conv", config.zDim, config.zDim, {1, 1, 1});
  decoder_ = std::make_unique<vae::Decoder3d>(w, config);
  parameterCount_ = w.count;
  auto opts = at::TensorOptions().dtype(at::kFloat);
  latentsMean_ = at::tensor(std::vector<float>(config.latentsMean.begin(), config.latentsMean.end()), opts)
                     .view({1, config.zDim, 1, 1, 1})
                     .to(device_);
  // 1 / std in float32, as the pipelines compute it
  latentsInvStd_ = at::tensor(std::vector<float>(config.latentsStd.begin(), config.latentsStd.end()), opts)
                       .reciprocal()
                       .view({1, config.zDim, 1, 1, 1})
                       .to(device_);
}

void WanVae::forEachWeight(const vae::WeightFn& fn) {
  encoder_->forEachWeight(fn);
  quantConv_.forEachWeight(fn), postQuantConv_.forEachWeight(fn);
  decoder_->forEachWeight(fn);
  fn(latentsMean_), fn(latentsInvStd_);
}

void WanVae::visit(at::Device device) {
  device_ = visit_.enter([&](const vae::WeightFn& fn) { forEachWeight(fn); }, device_, device);
}

void WanVae::leave() {
  device_ = visit_.leave([&](const vae::WeightFn& fn) { forEachWeight(fn); }, device_);
}

// ---- tiling options

void WanVae::checkTiling(const TilingOptions& t) const {
  const int64_t s = config_.scaleFactorSpatial;
  if (t.tileSize <= 0 || t.tileSize % s != 0)
    throwBadArgument("option 'tileSize' is " + std::to_string(t.tileSize) + "; it must be a positive multiple of " + std::to_string(s));
  if (t.tileOverlap < 0 || t.tileOverlap % s != 0 || t.tileOverlap >= t.tileSize)
    throwBadArgument("option 'tileOverlap' is " + std::to_string(t.tileOverlap) + "; it must be a multiple of " + std::to_string(s) +
                     " in [0, tileSize)");
}

// What 'auto' lets an untiled pass use: 90% of the device's free memory, and on the CPU at most
// 4 GiB beyond the weights (a host shared with the rest of the service, and the goal of keeping the
// CPU path within a few GB; tiled decode of 1280x704x121 needs ~4.7 GB with its result buffers).
static int64_t autoBudget(at::Device device) {
  const int64_t free = freeDeviceBytes(device) * 9 / 10;
  return device.is_cpu() ? std::min<int64_t>(free, int64_t(4) << 30) : free;
}

bool WanVae::decodeTiles(const std::vector<int64_t>& shape, const TilingOptions& t) const {
  if (t.mode == TilingOptions::Mode::Off) return false;
  checkTiling(t);
  const int64_t tile = t.tileSize / config_.scaleFactorSpatial;
  if (shape.size() != 5 || (shape[3] <= tile && shape[4] <= tile)) return false;  // one tile is the whole frame
  if (t.mode == TilingOptions::Mode::On) return true;
  return estimateDecodeBytes(shape, false) > autoBudget(device_);
}

bool WanVae::encodeTiles(const std::vector<int64_t>& shape, const TilingOptions& t) const {
  if (t.mode == TilingOptions::Mode::Off) return false;
  checkTiling(t);
  if (shape.size() != 5 || (shape[3] <= t.tileSize && shape[4] <= t.tileSize)) return false;
  if (t.mode == TilingOptions::Mode::On) return true;
  return estimateEncodeBytes(shape, false) > autoBudget(device_);
}

// ---- memory estimates

int64_t WanVae::estimateDecodeBytes(const std::vector<int64_t>& shape, bool tiled, const TilingOptions& t) const {
  if (shape.size() != 5) throwBadArgument("latent shape must be [B, z, F', H', W']");
  const int64_t b = shape[0], frames = shape[2], h = shape[3], w = shape[4];
  const int64_t tile = t.tileSize / config_.scaleFactorSpatial;
  const int64_t th = tiled ? std::min(h, tile) : h, tw = tiled ? std::min(w, tile) : w;
  vae::MemoryTally m;
  m.elementBytes = elementBytes(dtype_);
  decoder_->estimate({config_.zDim, 1, th, tw}, m, /*firstChunk=*/false);  // the steady-state chunk
  int64_t bytes = b * (m.cacheBytes + m.peakTransient) + b * config_.zDim * frames * h * w * m.elementBytes;
  if (device_.is_cpu()) {
    // the float32 result on the host (twice when tiled: blended decoder-space buffer + video), tile outputs
    const int64_t outFrames = 1 + (frames - 1) * config_.scaleFactorTemporal;
    const int64_t video = b * 3 * outFrames * h * w * config_.scaleFactorSpatial * config_.scaleFactorSpatial * 4;
    bytes += tiled ? 2 * video + video * th * tw / (h * w) : video;
  }
  return bytes + bytes / kEstimateMargin;
}

int64_t WanVae::estimateEncodeBytes(const std::vector<int64_t>& shape, bool tiled, const TilingOptions& t) const {
  if (shape.size() != 5) throwBadArgument("video shape must be [B, 3, F, H, W]");
  const int64_t b = shape[0], frames = shape[2], h = shape[3], w = shape[4], p = config_.patchSize;
  const int64_t th = tiled ? std::min(h, t.tileSize) : h, tw = tiled ? std::min(w, t.tileSize) : w;
  vae::MemoryTally m;
  m.elementBytes = elementBytes(dtype_);
  encoder_->estimate({config_.inChannels, config_.scaleFactorTemporal, th / p, tw / p}, m, false);
  // the input video in the model dtype (and its patchified copy)
  const int64_t bytes = b * (m.cacheBytes + m.peakTransient) + 2 * b * 3 * frames * h * w * m.elementBytes;
  return bytes + bytes / kEstimateMargin;
}

// ---- patchify

at::Tensor WanVae::patchify(const at::Tensor& x) const {
  const int64_t p = config_.patchSize;
  if (p == 1) return x;
  const int64_t b = x.size(0), c = x.size(1), f = x.size(2), h = x.size(3) / p, w = x.size(4) / p;
  // b c f (h q) (w r) -> b (c r q) f h w
  return x.reshape({b, c, f, h, p, w, p}).permute({0, 1, 6, 4, 2, 3, 5}).reshape({b, c * p * p, f, h, w});
}

at::Tensor WanVae::unpatchify(const at::Tensor& x) const {
  const int64_t p = config_.patchSize;
  if (p == 1) return x;
  const int64_t b = x.size(0), c = x.size(1) / (p * p), f = x.size(2), h = x.size(3), w = x.size(4);
  return x.reshape({b, c, p, p, f, h, w}).permute({0, 1, 4, 5, 3, 6, 2}).reshape({b, c, f, h * p, w * p});
}

// ---- encode

VaeEncoding WanVae::encode(const at::Tensor& video, const TilingOptions& tiling, const RunContext* ctx) const {
  const int64_t s = config_.scaleFactorSpatial, ft = config_.scaleFactorTemporal;
  bool ok = video.defined() && video.dim() == 5 && at::isFloatingType(video.scalar_type()) && video.size(0) >= 1 &&
            video.size(1) == 3 && video.size(2) >= 1 && (video.size(2) - 1) % ft == 0 && video.size(3) > 0 &&
            video.size(4) > 0 && video.size(3) % s == 0 && video.size(4) % s == 0;
  if (!ok)
    throwBadArgument("video must be a float tensor [B, 3, F, H, W] with F = " + std::to_string(ft) + "k+1 and H, W multiples of " +
                     std::to_string(s) + "; got " + (video.defined() ? shapeString(video.sizes()) : std::string("nothing")));
  bool tiled = encodeTiles(video.sizes().vec(), tiling);
  at::Tensor x = patchify(video.to(device_, dtype_));
  at::Tensor h = tiled ? encodeTiled(x, tiling, ctx) : encodeWhole(x, ctx, 0, 1);
  VaeEncoding e;
  e.mean = h.narrow(1, 0, config_.zDim).to(at::kFloat).contiguous();
  e.logvar = h.narrow(1, config_.zDim, config_.zDim).to(at::kFloat).clamp(-30.0, 20.0);
  return e;
}

// Causal chunks of 1, 4, 4, ... frames through the encoder and quant_conv.
at::Tensor WanVae::encodeWhole(const at::Tensor& x, const RunContext* ctx, int64_t tile, int64_t tiles) const {
  const int64_t ft = config_.scaleFactorTemporal, frames = x.size(2);
  const int64_t chunks = 1 + (frames - 1) / ft;
  Clock clock;
  vae::CausalCache cache;
  at::Tensor out;
  for (int64_t i = 0; i < chunks; ++i) {
    checkCancelled(ctx);
    at::Tensor chunk = i == 0 ? x.narrow(2, 0, 1) : x.narrow(2, 1 + ft * (i - 1), ft);
    at::Tensor h = quantConv_.forward(encoder_->forward(chunk, cache, ctx));
    if (!out.defined()) out = at::empty({x.size(0), h.size(1), chunks, h.size(3), h.size(4)}, h.options());
    out.narrow(2, i, 1).copy_(h);
    report(ctx, "encode-image", tile * chunks + i + 1, tiles * chunks, clock);
  }
  return out;
}

at::Tensor WanVae::encodeTiled(const at::Tensor& x, const TilingOptions& t, const RunContext* ctx) const {
  const int64_t p = config_.patchSize, s = config_.scaleFactorSpatial;
  const int64_t tile = t.tileSize / p, stride = (t.tileSize - t.tileOverlap) / p;  // in patchified pixels
  const int64_t height = x.size(3), width = x.size(4);
  const int64_t rows = tileCount(height, stride), cols = tileCount(width, stride);
  const int64_t latH = height * p / s, latW = width * p / s, latStride = stride * p / s;
  const int64_t chunks = 1 + (x.size(2) - 1) / config_.scaleFactorTemporal;
  at::Tensor out = at::empty({x.size(0), 2 * config_.zDim, chunks, latH, latW}, x.options());
  TileBlender blender(out, latStride, t.tileOverlap / s, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      int64_t y0 = i * stride, x0 = j * stride;
      at::Tensor part = x.narrow(3, y0, std::min(tile, height - y0)).narrow(4, x0, std::min(tile, width - x0));
      blender.add(i, j, encodeWhole(part, ctx, i * cols + j, rows * cols));
    }
  return out;
}

// ---- normalization

at::Tensor WanVae::normalize(const at::Tensor& mean) const {
  if (!mean.defined() || mean.dim() != 5 || mean.size(1) != config_.zDim)
    throwBadArgument("latents must be [B, " + std::to_string(config_.zDim) + ", F', H', W']; got " +
                     (mean.defined() ? shapeString(mean.sizes()) : std::string("nothing")));
  at::Tensor m = mean.to(at::kFloat);
  return (m - latentsMean_.to(m.device())) * latentsInvStd_.to(m.device());
}

at::Tensor WanVae::denormalize(const at::Tensor& latents) const {
  if (!latents.defined() || latents.dim() != 5 || latents.size(1) != config_.zDim)
    throwBadArgument("latents must be [B, " + std::to_string(config_.zDim) + ", F', H', W']; got " +
                     (latents.defined() ? shapeString(latents.sizes()) : std::string("nothing")));
  at::Tensor z = latents.to(at::kFloat);
  return z / latentsInvStd_.to(z.device()) + latentsMean_.to(z.device());
}

// ---- decode

// Decodes latent frames one at a time into `out` (float32, CPU, decoder output space: before
// unpatchify); or, when `out` is undefined, straight into the final video (unpatchified, clamped),
// allocated here.
void WanVae::decodeInto(const at::Tensor& z, at::Tensor& out, const RunContext* ctx, int64_t tile, int64_t tiles) const {
  const int64_t frames = z.size(2);
  const bool video = !out.defined();
  Clock clock;
  vae::CausalCache cache;
  int64_t t0 = 0;
  for (int64_t i = 0; i < frames; ++i) {
    checkCancelled(ctx);
    at::Tensor x = postQuantConv_.forward(z.narrow(2, i, 1));
    at::Tensor y = decoder_->forward(x, cache, i == 0, ctx);
    x.reset();
    if (video) y = unpatchify(y).clamp_(-1.0, 1.0);
    y = y.to(at::kCPU, at::kFloat);
    if (!out.defined()) {
      const int64_t total = 1 + (frames - 1) * config_.scaleFactorTemporal;
      out = at::empty({y.size(0), y.size(1), total, y.size(3), y.size(4)}, y.options());
    }
    out.narrow(2, t0, y.size(2)).copy_(y);
    t0 += y.size(2);
    report(ctx, "decode", tile * frames + i + 1, tiles * frames, clock);
  }
}

at::Tensor WanVae::decode(const at::Tensor& latents, const TilingOptions& tiling, const RunContext* ctx) const {
  bool ok = latents.defined() && latents.dim() == 5 && at::isFloatingType(latents.scalar_type()) && latents.size(0) >= 1 &&
            latents.size(1) == config_.zDim && latents.size(2) >= 1 && latents.size(3) >= 1 && latents.size(4) >= 1;
  if (!ok)
    throwBadArgument("latents must be a float tensor [B, " + std::to_string(config_.zDim) + ", F', H', W']; got " +
                     (latents.defined() ? shapeString(latents.sizes()) : std::string("nothing")));
  at::Tensor z = latents.to(device_, dtype_);
  if (decodeTiles(latents.sizes().vec(), tiling)) return decodeTiled(z, tiling, ctx);
  at::Tensor video;
  decodeInto(z, video, ctx, 0, 1);
  return video;
}

at::Tensor WanVae::decodeTiled(const at::Tensor& z, const TilingOptions& t, const RunContext* ctx) const {
  const int64_t s = config_.scaleFactorSpatial, p = config_.patchSize;
  const int64_t latTile = t.tileSize / s, latStride = (t.tileSize - t.tileOverlap) / s;
  const int64_t h = z.size(3), w = z.size(4);
  const int64_t rows = tileCount(h, latStride), cols = tileCount(w, latStride);
  const int64_t frames = 1 + (z.size(2) - 1) * config_.scaleFactorTemporal;
  // blending happens in the decoder's output space (before unpatchify), as in Diffusers
  at::Tensor blended = at::empty({z.size(0), config_.outChannels, frames, h * s / p, w * s / p}, at::kFloat);
  TileBlender blender(blended, (t.tileSize - t.tileOverlap) / p, t.tileOverlap / p, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      int64_t y0 = i * latStride, x0 = j * latStride;
      at::Tensor part = z.narrow(3, y0, std::min(latTile, h - y0)).narrow(4, x0, std::min(latTile, w - x0));
      at::Tensor decoded = at::empty({z.size(0), config_.outChannels, frames, part.size(3) * s / p, part.size(4) * s / p}, at::kFloat);
      decodeInto(part, decoded, ctx, i * cols + j, rows * cols);
      blender.add(i, j, std::move(decoded));
    }
  at::Tensor video = unpatchify(blended);
  blended = at::Tensor();
  return video.clamp_(-1.0, 1.0);
}

}  // namespace wan
