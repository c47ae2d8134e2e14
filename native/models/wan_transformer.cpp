#include "wan_transformer.h"

#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <cmath>
#include <deque>

#include "attention.h"
#include "core/errors.h"
#include "kernels/modulation.h"

namespace wan {

namespace {


WanLinear loadLinear(WeightSource& w, const std::string& prefix, int64_t out, int64_t in, at::ScalarType dtype) {
  return {w.get(prefix + ".weight", {out, in}, dtype), w.get(prefix + ".bias", {out}, dtype)};
}

WanAttentionWeights loadAttention(WeightSource& w, const std::string& prefix, int64_t dim, at::ScalarType dtype) {
  WanAttentionWeights a;
  a.toQ = loadLinear(w, prefix + ".to_q", dim, dim, dtype);
  a.toK = loadLinear(w, prefix + ".to_k", dim, dim, dtype);
  a.toV = loadLinear(w, prefix + ".to_v", dim, dim, dtype);
  a.toOut = loadLinear(w, prefix + ".to_out.0", dim, dim, dtype);
  // In the model dtype, as diffusers loads them (norm_q/norm_k are not among its float32 modules);
  // at::rms_norm takes its fused kernel only when the weight's dtype is the input's.
  a.normQ = w.get(prefix + ".norm_q.weight", {dim}, dtype);
  a.normK = w.get(prefix + ".norm_k.weight", {dim}, dtype);
  return a;
}

// RMSNorm over the full inner dim (all heads together), computed in float32 and rounded once, after
// the weight. libtorch >= 2.4 has the op the reference calls (diffusers' torch.nn.RMSNorm ->
// at::rms_norm): where libtorch has a fused kernel for it (_fused_rms_norm; torch 2.13 declares a
// CUDA one) that is one pass over q or k instead of the composite's five over a float32 copy, and it
// gives the composite's values (measured equal on the CPU with torch 2.13, float32 and bfloat16).
// Older libtorch: the composite, with the last product stored in x's dtype directly.
at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::rms_norm(x, {x.size(-1)}, weight, eps);
#else
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean(-1, true).add_(eps));
  at::Tensor out = at::empty(x.sizes(), x.options());
  return at::mul_out(out, xf * inv, weight);
#endif
}

// (a.float() + b).to(a.dtype) for a float32 b, without the two float32 copies: libtorch upcasts a
// on load, adds in float32 and rounds on store.
at::Tensor addInDtypeOf(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::empty(a.sizes(), a.options());
  return at::add_out(out, a, b);
}

// Rotates interleaved pairs (x[2j], x[2j+1]) of x [B, S, H, D] by `table` [S, D/2] (cos + i sin):
// (x1 cos - x2 sin, x1 sin + x2 cos) in float32 like the reference, result in x's dtype. As one
// complex product: one pass over x instead of six over its halves plus a stack (2-3x faster on the
// CPU at [1, 8192, 40, 128]). libtorch's complex kernels may round the two products' sum once
// instead of twice: last-bit differences, the same error against the float64 fixtures.
at::Tensor applyRope(const at::Tensor& x, const at::Tensor& table) {
  const int64_t b = x.size(0), s = x.size(1), h = x.size(2), d = x.size(3);
  at::Tensor pairs = at::view_as_complex(x.to(at::kFloat).contiguous().view({b, s, h, d / 2, 2}));
  return at::view_as_real(pairs * table.view({1, s, 1, d / 2})).view({b, s, h, d}).to(x.scalar_type());
}

// Row `row` of a [1, n, dim] float32 table plus v ([B, dim] or [B, seq, dim]), broadcastable over
// tokens: [B, 1, dim] or [B, seq, dim] float32.
at::Tensor modulation(const at::Tensor& table, int64_t row, const at::Tensor& v) {
  at::Tensor x = v.dim() == 2 ? v.unsqueeze(1) : v;
  return x.to(at::kFloat) + table.select(1, row);
}

// cos/sin of position * 1/10000^(2j/axisDim) for positions [0, count): [count, axisDim/2] float64.
std::pair<at::Tensor, at::Tensor> axisAngles(int64_t count, int64_t axisDim) {
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor inv = at::pow(10000.0, at::arange(0, axisDim, 2, f64).slice(0, 0, axisDim / 2) / static_cast<double>(axisDim)).reciprocal();
  at::Tensor angles = at::outer(at::arange(count, f64), inv);
  return {angles.cos(), angles.sin()};
}

}  // namespace

std::unique_ptr<WanTransformer> WanTransformer::load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx) {
  TransformerConfig config = readTransformerConfig(dir + "/config.json");
  WeightLoader loader(TensorStore::openFolder(dir), dtype, device, ctx);
  return std::make_unique<WanTransformer>(config, loader);
}

WanTransformer::WanTransformer(const TransformerConfig& config, WeightSource& w)
    : config_(config), dtype_(w.dtype()), device_(w.device()) {
#if TORCH_VERSION_MAJOR < 2
  // libtorch 1.x has no float16 matmul on the CPU ("addmm_impl_cpu_ not implemented for 'Half'").
  if (dtype_ == at::kHalf && device_.is_cpu())
    throwBadArgument("option 'dtype' is 'float16', which libtorch " TORCH_VERSION " cannot run on the CPU; use 'bfloat16' or 'float32' there");
#endif
  const int64_t dim = config.dim();
  const auto [pt, ph, pw] = config.patchSize;
  const at::ScalarType f32 = at::kFloat;
  outer_.patchWeight = w.get("patch_embedding.weight", {dim, config.inChannels, pt, ph, pw}).reshape({dim, -1});
  outer_.patchBias = w.get("patch_embedding.bias", {dim});
  outer_.timeLinear1 = loadLinear(w, "condition_embedder.time_embedder.linear_1", dim, config.freqDim, f32);
  outer_.timeLinear2 = loadLinear(w, "condition_embedder.time_embedder.linear_2", dim, dim, f32);
  outer_.timeProj = loadLinear(w, "condition_embedder.time_proj", 6 * dim, dim, dtype_);
  outer_.textLinear1 = loadLinear(w, "condition_embedder.text_embedder.linear_1", dim, config.textDim, dtype_);
  outer_.textLinear2 = loadLinear(w, "condition_embedder.text_embedder.linear_2", dim, dim, dtype_);
  for (int64_t i = 0; i < config.numLayers; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    WanBlockWeights b;
    b.selfAttn = loadAttention(w, p + ".attn1", dim, dtype_);
    b.crossAttn = loadAttention(w, p + ".attn2", dim, dtype_);
    if (config.crossAttnNorm) {
      b.norm2Weight = w.get(p + ".norm2.weight", {dim}, f32);
      b.norm2Bias = w.get(p + ".norm2.bias", {dim}, f32);
    }
    b.ffnIn = loadLinear(w, p + ".ffn.net.0.proj", config.ffnDim, dim, dtype_);
    b.ffnOut = loadLinear(w, p + ".ffn.net.2", dim, config.ffnDim, dtype_);
    b.scaleShiftTable = w.get(p + ".scale_shift_table", {1, 6, dim}, f32);
    blocks_.push_back(std::move(b));
  }
  outer_.projOut = loadLinear(w, "proj_out", config.outChannels * pt * ph * pw, dim, dtype_);
  outer_.scaleShiftTable = w.get("scale_shift_table", {1, 2, dim}, f32);
  w.finish();
}

void WanTransformer::forEachBlockWeight(WanBlockWeights& b, const std::function<void(at::Tensor&)>& fn) {
  auto linear = [&](WanLinear& l) {
    fn(l.weight);
    fn(l.bias);
  };
  auto attn = [&](WanAttentionWeights& a) {
    linear(a.toQ), linear(a.toK), linear(a.toV), linear(a.toOut);
    fn(a.normQ), fn(a.normK);
  };
  attn(b.selfAttn), attn(b.crossAttn);
  if (b.norm2Weight.defined()) fn(b.norm2Weight), fn(b.norm2Bias);
  linear(b.ffnIn), linear(b.ffnOut);
  fn(b.scaleShiftTable);
}

void WanTransformer::forEachOuterWeight(WanOuterWeights& o, const std::function<void(at::Tensor&)>& fn) {
  auto linear = [&](WanLinear& l) {
    fn(l.weight);
    fn(l.bias);
  };
  fn(o.patchWeight), fn(o.patchBias);
  linear(o.timeLinear1), linear(o.timeLinear2), linear(o.timeProj), linear(o.textLinear1), linear(o.textLinear2);
  linear(o.projOut);
  fn(o.scaleShiftTable);
}

void WanTransformer::forEachWeight(const std::function<void(at::Tensor&)>& fn) {
  forEachOuterWeight(outer_, fn);
  for (auto& b : blocks_) forEachBlockWeight(b, fn);
}

namespace {

template <typename Weights, typename ForEach>
std::vector<at::Tensor*> weightRefs(Weights& w, ForEach forEach) {
  std::vector<at::Tensor*> refs;
  forEach(w, [&](at::Tensor& t) { refs.push_back(&t); });
  return refs;
}

template <typename Weights, typename ForEach>
int64_t weightBytes(Weights& w, ForEach forEach) {
  int64_t n = 0;
  forEach(w, [&](at::Tensor& t) { n += t.numel() * static_cast<int64_t>(t.element_size()); });
  return n;
}

}  // namespace

int64_t WanTransformer::parameterCount() const {
  int64_t n = 0;
  const_cast<WanTransformer*>(this)->forEachWeight([&](at::Tensor& t) { n += t.numel(); });
  return n;
}

int64_t WanTransformer::deviceWeightBytes() const {
  auto bytes = [](WanOuterWeights& outer, std::vector<WanBlockWeights>& blocks) {
    int64_t n = weightBytes(outer, forEachOuterWeight);
    for (auto& b : blocks) n += weightBytes(b, forEachBlockWeight);
    return n;
  };
  auto* self = const_cast<WanTransformer*>(this);
  if (placement_ == WeightPlacement::Resident) return bytes(self->outer_, self->blocks_);
  return onDevice_ ? bytes(onDevice_->outer, onDevice_->blocks) : 0;
}

void WanTransformer::to(at::Device device) {
  if (placement_ == WeightPlacement::Resident && device == device_) return;
  onDevice_.reset();
  uploader_.reset();
  forEachWeight([&](at::Tensor& t) { t = t.to(device); });
  device_ = device;
  placement_ = WeightPlacement::Resident;
}

void WanTransformer::keepOnHost(at::Device device, std::shared_ptr<UploadStream> uploads, const RunContext* ctx) {
  onDevice_.reset();
  if (placement_ == WeightPlacement::Resident) {
    // Pinned host memory makes the uploads asynchronous DMA copies; on the CPU the weights stay as
    // they are (mapped from the checkpoint when the dtype matches).
    // (The arena copies from wherever a weight is, the device included: one copy, no pageable hop.)
    int64_t total = 0;
    forEachWeight([&](at::Tensor& t) { total += HostArena::alignedBytes(t); });
    HostArena arena = HostArena::forTotal(/*pin=*/device.is_cuda(), total);
    forEachWeight([&](at::Tensor& t) {
      if (ctx) ctx->checkCancelled();
      t = device.is_cuda() ? arena.copy(t) : t.to(at::kCPU);
    });
  }
  device_ = device;
  uploader_ = uploads ? std::move(uploads) : std::make_shared<UploadStream>(device);
}

void WanTransformer::offload(at::Device device, std::shared_ptr<UploadStream> uploads, const RunContext* ctx) {
  keepOnHost(device, std::move(uploads), ctx);
  placement_ = WeightPlacement::Offloaded;
}

std::unique_ptr<WanTransformer::DeviceCopy> WanTransformer::uploadOuter() const {
  auto copy = std::make_unique<DeviceCopy>();
  copy->outer = outer_;
  copy->outerUpload = uploader_->start(weightRefs(copy->outer, forEachOuterWeight));
  return copy;
}

void WanTransformer::upload() {
  if (placement_ != WeightPlacement::Offloaded || onDevice_) return;
  auto copy = uploadOuter();
  copy->blocks = blocks_;
  for (auto& b : copy->blocks) copy->blockUploads.push_back(uploader_->start(weightRefs(b, forEachBlockWeight)));
  onDevice_ = std::move(copy);
}

void WanTransformer::release() {
  if (placement_ != WeightPlacement::Offloaded || !onDevice_) return;
  uploader_->synchronize();
  onDevice_.reset();
}

void WanTransformer::streamBlocks(at::Device device, std::shared_ptr<UploadStream> uploads, const RunContext* ctx) {
  keepOnHost(device, std::move(uploads), ctx);
  placement_ = WeightPlacement::Streamed;
  onDevice_ = uploadOuter();
}

at::Tensor WanTransformer::ropeTable(int64_t frames, int64_t height, int64_t width) const {
  // Every step of a generation uses the same grid: build its table once per grid and device.
  std::lock_guard<std::mutex> lock(forwardStateMutex_);
  if (ropeCache_.key == std::array<int64_t, 3>{frames, height, width} && ropeCache_.table.defined() && ropeCache_.table.device() == device_)
    return ropeCache_.table;
  const int64_t d = config_.headDim;
  const int64_t hDim = 2 * (d / 6), tDim = d - 2 * hDim;
  auto [cosT, sinT] = axisAngles(frames, tDim);
  auto [cosH, sinH] = axisAngles(height, hDim);
  auto [cosW, sinW] = axisAngles(width, hDim);
  auto grid = [&](const at::Tensor& t, const at::Tensor& h, const at::Tensor& w) {
    at::Tensor full = at::cat({t.view({frames, 1, 1, -1}).expand({frames, height, width, -1}),
                               h.view({1, height, 1, -1}).expand({frames, height, width, -1}),
                               w.view({1, 1, width, -1}).expand({frames, height, width, -1})},
                              -1);
    // The reference's tables are float64 rounded to float32.
    return full.reshape({frames * height * width, d / 2}).to(at::kFloat);
  };
  ropeCache_ = {{frames, height, width}, at::complex(grid(cosT, cosH, cosW), grid(sinT, sinH, sinW)).to(device_)};
  return ropeCache_.table;
}

std::string WanTransformer::selfAttentionBackend() const {
  std::lock_guard<std::mutex> lock(forwardStateMutex_);
  return selfAttentionBackend_;
}

at::Tensor WanTransformer::attention(const WanAttentionWeights& w, const at::Tensor& x, const at::Tensor& context,
                                     const at::Tensor* rope, std::string* backend, const RunContext* ctx) const {
  const int64_t b = x.size(0), s = x.size(1), l = context.size(1), h = config_.numHeads, d = config_.headDim;
  at::Tensor q = rmsNorm(w.toQ(x), w.normQ, config_.eps).view({b, s, h, d});
  at::Tensor k = rmsNorm(w.toK(context), w.normK, config_.eps).view({b, l, h, d});
  at::Tensor v = w.toV(context).view({b, l, h, d});
  if (rope) {
    q = applyRope(q, *rope);
    k = applyRope(k, *rope);
  }
  q = q.transpose(1, 2), k = k.transpose(1, 2), v = v.transpose(1, 2);  // [B, H, S, D] views
  if (backend) *backend = attentionBackendFor(q, k, v);
  at::Tensor out = wan::attention(q, k, v, ctx);
  return w.toOut(out.transpose(1, 2).reshape({b, s, h * d}));
}

at::Tensor WanTransformer::block(const WanBlockWeights& w, const at::Tensor& input, const at::Tensor& context,
                                 const at::Tensor& timestepProj, const at::Tensor& rope, std::string* selfAttentionBackend,
                                 const RunContext* ctx) const {
  const int64_t dim = config_.dim();
  const double eps = config_.eps;
  auto mod = [&](int64_t i) { return modulation(w.scaleShiftTable, i, timestepProj.narrow(-1, i * dim, dim)); };

  // Self-attention, modulated and gated.
  at::Tensor shift = mod(0), scale = mod(1), gate = mod(2);
  at::Tensor h = layerNormModulate(input, scale, shift, eps, dtype_);
  at::Tensor x = addInDtypeOf(input, attention(w.selfAttn, h, h, &rope, selfAttentionBackend, ctx) * gate);

  // Cross-attention over every text row (no mask), not gated.
  h = w.norm2Weight.defined() ? at::layer_norm(x.to(at::kFloat), {dim}, w.norm2Weight, w.norm2Bias, eps).to(dtype_) : x;
  x = x + attention(w.crossAttn, h, context, nullptr);

  // Feed-forward, modulated and gated.
  shift = mod(3), scale = mod(4), gate = mod(5);
  h = layerNormModulate(x, scale, shift, eps, dtype_);
  at::Tensor ffn = w.ffnOut(at::gelu(w.ffnIn(h), "tanh"));
  return addInDtypeOf(x, ffn * gate);
}

at::Tensor WanTransformer::forward(const at::Tensor& hidden, const at::Tensor& timestep, const at::Tensor& context,
                                   TransformerDebug* debug, const RunContext* ctx) const {
  return forwardPasses(hidden, timestep, {context}, debug, ctx).front();
}

bool WanTransformer::streamsBlocks() const {
  return placement_ == WeightPlacement::Streamed || (placement_ == WeightPlacement::Offloaded && !onDevice_);
}

std::vector<at::Tensor> WanTransformer::forwardEach(const at::Tensor& hidden, const at::Tensor& timestep,
                                                    const std::vector<at::Tensor>& contexts, const RunContext* ctx) const {
  // Interleaving pays only where the blocks travel; elsewhere it would hold a hidden state per pass.
  if (streamsBlocks()) return forwardPasses(hidden, timestep, contexts, nullptr, ctx);
  std::vector<at::Tensor> out;
  for (const at::Tensor& context : contexts) out.push_back(forwardPasses(hidden, timestep, {context}, nullptr, ctx).front());
  return out;
}

std::vector<at::Tensor> WanTransformer::forwardPasses(const at::Tensor& hiddenIn, const at::Tensor& timestepIn,
                                                      const std::vector<at::Tensor>& contexts, TransformerDebug* debug,
                                                      const RunContext* ctx) const {
  c10::InferenceMode inference;
  const TransformerConfig& c = config_;
  const auto [pt, ph, pw] = c.patchSize;
  const int64_t dim = c.dim();

  // ---- input checks
  if (hiddenIn.dim() != 5 || !at::isFloatingType(hiddenIn.scalar_type()) || hiddenIn.size(1) != c.inChannels)
    throwBadArgument("hidden states must be a floating tensor [B, " + std::to_string(c.inChannels) + ", F, H, W]; got " +
                     c10::toString(hiddenIn.scalar_type()) + " " + shapeString(hiddenIn.sizes()));
  const int64_t batch = hiddenIn.size(0), frames = hiddenIn.size(2), height = hiddenIn.size(3), width = hiddenIn.size(4);
  if (batch < 1 || frames < 1 || height < 1 || width < 1 || frames % pt || height % ph || width % pw)
    throwBadArgument("hidden states " + shapeString(hiddenIn.sizes()) + ": B must be >= 1 and F, H, W positive multiples of the patch size [" +
                     std::to_string(pt) + ", " + std::to_string(ph) + ", " + std::to_string(pw) + "]");
  const int64_t f = frames / pt, hp = height / ph, wp = width / pw, seq = f * hp * wp;
  if (f > c.ropeMaxSeqLen || hp > c.ropeMaxSeqLen || wp > c.ropeMaxSeqLen)
    throwBadArgument("hidden states " + shapeString(hiddenIn.sizes()) + " give a patch grid larger than rope_max_seq_len " + std::to_string(c.ropeMaxSeqLen));
  if (contexts.empty()) throwBadArgument("a DiT forward needs encoder hidden states (none given)");
  for (const at::Tensor& contextIn : contexts) {
    if (contextIn.dim() != 3 || !at::isFloatingType(contextIn.scalar_type()) || contextIn.size(0) != batch ||
        contextIn.size(1) < 1 || contextIn.size(2) != c.textDim)
      throwBadArgument("encoder hidden states must be a floating tensor [" + std::to_string(batch) + ", L, " + std::to_string(c.textDim) +
                       "]; got " + shapeString(contextIn.sizes()));
  }
  const bool tsNumeric = at::isFloatingType(timestepIn.scalar_type()) || at::isIntegralType(timestepIn.scalar_type(), false);
  const bool perToken = timestepIn.dim() == 2;
  const bool tsShapeOk = (timestepIn.dim() <= 1 && (timestepIn.numel() == 1 || timestepIn.numel() == batch)) ||
                         (perToken && timestepIn.size(0) == batch && timestepIn.size(1) == seq);
  if (!tsNumeric || !tsShapeOk)
    throwBadArgument("timestep must be a numeric tensor [" + std::to_string(batch) + "] (or one value) or per-token [" + std::to_string(batch) +
                     ", " + std::to_string(seq) + "]; got " + shapeString(timestepIn.sizes()));

  const at::Tensor hidden = hiddenIn.to(device_, dtype_);
  at::Tensor timestep = timestepIn.to(device_, at::kFloat).reshape({-1});
  if (!perToken && timestep.numel() == 1) timestep = timestep.expand({batch});

  // ---- where this forward's weights are: the device copy of the outer layers (Offloaded without
  // upload(): this forward uploads its own and streams the blocks).
  const WanOuterWeights* outerPtr = &outer_;
  std::unique_ptr<DeviceCopy> ownCopy;
  const DeviceCopy* copy = onDevice_.get();
  if (placement_ != WeightPlacement::Resident) {
    if (!copy) {
      ownCopy = uploadOuter();
      copy = ownCopy.get();
    }
    uploader_->await(copy->outerUpload);
    outerPtr = &copy->outer;
  }
  const WanOuterWeights& outer = *outerPtr;

  // ---- rotary tables and patch embedding (Conv3d with kernel = stride = patch, as one matmul)
  const at::Tensor rope = ropeTable(f, hp, wp);
  at::Tensor patches = hidden.reshape({batch, c.inChannels, f, pt, hp, ph, wp, pw})
                           .permute({0, 2, 4, 6, 1, 3, 5, 7})
                           .reshape({batch, seq, -1});
  at::Tensor x = at::linear(patches, outer.patchWeight, outer.patchBias);  // [B, seq, dim]
  if (debug) {
    const int64_t half = c.headDim / 2;
    // The reference's layout: each pair's cos (sin) repeated for both of its elements.
    auto perElement = [&](const at::Tensor& t) { return t.unsqueeze(-1).expand({seq, half, 2}).reshape({1, seq, 1, c.headDim}); };
    debug->add("rope_cos", perElement(at::real(rope)));
    debug->add("rope_sin", perElement(at::imag(rope)));
    debug->add("patch_embedding", x.view({batch, f, hp, wp, dim}).permute({0, 4, 1, 2, 3}));
  }

  // ---- timestep embedding: sinusoid [cos, sin] -> time_embedder (float32) -> time_proj. The
  // frequencies are float32 as in the reference; t * freq is formed in float64 (as the official
  // code does; measured 7x closer to the fixtures than a float32 product, whose rounding at
  // t ~ 1000 is ~6e-5 rad) and the sinusoid rounded to float32.
  const int64_t half = c.freqDim / 2;
  at::Tensor freqs = at::exp(at::arange(0, half, at::TensorOptions().dtype(at::kFloat).device(device_)) * -std::log(10000.0) / static_cast<double>(half));
  at::Tensor args = timestep.to(at::kDouble).unsqueeze(1) * freqs.to(at::kDouble).unsqueeze(0);
  at::Tensor sinusoid = at::cat({at::cos(args), at::sin(args)}, -1).to(at::kFloat);
  at::Tensor temb = outer.timeLinear2(at::silu(outer.timeLinear1(sinusoid))).to(dtype_);  // [B or B*seq, dim]
  at::Tensor timestepProj = outer.timeProj(at::silu(temb));                   // [B or B*seq, 6*dim]
  if (perToken) {
    temb = temb.view({batch, seq, dim});
    timestepProj = timestepProj.view({batch, seq, 6 * dim});
  }
  if (debug) {
    debug->add("temb", temb);
    debug->add("timestep_proj", timestepProj);
  }

  // ---- text projection, one per pass
  std::vector<at::Tensor> texts;
  for (const at::Tensor& context : contexts)
    texts.push_back(outer.textLinear2(at::gelu(outer.textLinear1(context.to(device_, dtype_)), "tanh")));

  // ---- blocks, each run by every pass before the next block. Streaming (a device copy without
  // blocks): block i+1 uploads on the side stream while block i runs, and block i's copy is dropped
  // when its compute is queued. Before block i+1's upload starts, the host waits until the device
  // has finished block i-2 (whose copy was dropped after it): the upload then reuses that memory,
  // and the device holds at most blocks i-1 (still running), i and i+1, while the host stays a
  // block ahead so the device never idles.
  struct Visiting {
    WanBlockWeights weights;
    Upload upload;
  };
  auto startVisit = [&](size_t i) {
    Visiting v{blocks_[i], {}};
    v.upload = uploader_->start(weightRefs(v.weights, forEachBlockWeight));
    return v;
  };
  std::string backend;  // what SDPA picks for block 0's self-attention (the same in every block)
  std::vector<at::Tensor> xs(contexts.size(), x);
  x.reset();  // the passes' states hold the patch embedding until block 0 replaces it
  auto runBlock = [&](const WanBlockWeights& w, size_t i) {
    for (size_t p = 0; p < xs.size(); ++p)
      xs[p] = block(w, xs[p], texts[p], timestepProj, rope, i == 0 && p == 0 ? &backend : nullptr, ctx);
  };
  const bool streamed = copy && copy->blocks.empty();
  std::unique_ptr<Visiting> next;
  std::deque<std::shared_ptr<c10::Event>> doneMarks;  // streaming: after each block's copy was dropped
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (ctx) ctx->checkCancelled();
    if (!copy) {
      runBlock(blocks_[i], i);
    } else if (!streamed) {
      uploader_->await(copy->blockUploads[i]);
      runBlock(copy->blocks[i], i);
    } else {
      auto current = next ? std::move(next) : std::make_unique<Visiting>(startVisit(i));
      if (doneMarks.size() >= 2) {
        UploadStream::waitFor(doneMarks.front());
        doneMarks.pop_front();
      }
      if (i + 1 < blocks_.size()) next = std::make_unique<Visiting>(startVisit(i + 1));
      uploader_->await(current->upload);
      runBlock(current->weights, i);
      current.reset();  // dropped before the mark: when the device passes it, the memory is reusable
      doneMarks.push_back(uploader_->mark());
    }
    if (debug) debug->add("block_" + std::to_string(i) + "_out", xs.front());
  }
  if (!blocks_.empty()) {
    std::lock_guard<std::mutex> lock(forwardStateMutex_);
    selfAttentionBackend_ = backend;
  }

  // ---- output head and unpatchify (proj_out features ordered (pt, ph, pw, C)), per pass
  const at::Tensor shift = modulation(outer.scaleShiftTable, 0, temb), scale = modulation(outer.scaleShiftTable, 1, temb);
  std::vector<at::Tensor> outputs;
  for (at::Tensor& state : xs) {
    at::Tensor out = outer.projOut(layerNormModulate(state, scale, shift, c.eps, dtype_));
    state.reset();
    out = out.view({batch, f, hp, wp, pt, ph, pw, c.outChannels}).permute({0, 7, 1, 4, 2, 5, 3, 6});
    outputs.push_back(out.reshape({batch, c.outChannels, frames, height, width}).to(at::kFloat));
  }
  return outputs;
}

}  // namespace wan
