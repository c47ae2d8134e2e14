#include "umt5_encoder.h"

#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "core/errors.h"

namespace wan {

namespace {

std::string layerPrefix(int64_t i) { return "encoder.block." + std::to_string(i) + "."; }

// Most negative finite value of a floating dtype: the additive bias of padded keys.
double mostNegative(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return -65504.0;
    case at::kBFloat16: return -3.3895313892515355e38;
    case at::kDouble: return std::numeric_limits<double>::lowest();
    default: return std::numeric_limits<float>::lowest();
  }
}

// transformers' float16 guard after each sub-layer: infinities become max - 1000.
at::Tensor clampHalfOverflow(const at::Tensor& x) {
  if (x.scalar_type() != at::kHalf || !at::isinf(x).any().item<bool>()) return x;
  return x.clamp(-64504.0, 64504.0);
}

}  // namespace

Umt5Encoder::Umt5Encoder(const TextEncoderConfig& config, WeightSource& weights)
    : config_(config), dtype_(weights.dtype()), device_(weights.device()) {
#if TORCH_VERSION_MAJOR < 2
  if (dtype_ == at::kHalf && device_.is_cpu())
    throwBadArgument("option 'dtype' is 'float16', which this libtorch (" TORCH_VERSION
                     ") cannot run on the CPU; allowed on the CPU: 'float32', 'bfloat16' (float16 needs a CUDA device)");
#endif
  const int64_t d = config.dModel, inner = config.numHeads * config.dKv, ff = config.dFf;
  // transformers ties encoder.embed_tokens to `shared`: checkpoints hold either name or both.
  const std::vector<int64_t> embedShape{config.vocabSize, d};
  if (weights.has("shared.weight")) {
    embedTokens = weights.get("shared.weight", embedShape);
    if (weights.has("encoder.embed_tokens.weight")) weights.acceptDuplicate("encoder.embed_tokens.weight", embedShape);
  } else {
    embedTokens = weights.get("encoder.embed_tokens.weight", embedShape);
  }
  for (int64_t i = 0; i < config.numLayers; ++i) {
    const std::string p = layerPrefix(i);
    Layer l;
    l.attentionNorm = weights.get(p + "layer.0.layer_norm.weight", {d});
    l.q = weights.get(p + "layer.0.SelfAttention.q.weight", {inner, d});
    l.k = weights.get(p + "layer.0.SelfAttention.k.weight", {inner, d});
    l.v = weights.get(p + "layer.0.SelfAttention.v.weight", {inner, d});
    l.o = weights.get(p + "layer.0.SelfAttention.o.weight", {d, inner});
    // UMT5: every layer has its own bias table (T5 shares layer 0's).
    l.relativeAttentionBias =
        weights.get(p + "layer.0.SelfAttention.relative_attention_bias.weight", {config.relativeAttentionNumBuckets, config.numHeads});
    l.ffnNorm = weights.get(p + "layer.1.layer_norm.weight", {d});
    l.wi0 = weights.get(p + "layer.1.DenseReluDense.wi_0.weight", {ff, d});
    l.wi1 = weights.get(p + "layer.1.DenseReluDense.wi_1.weight", {ff, d});
    l.wo = weights.get(p + "layer.1.DenseReluDense.wo.weight", {d, ff}, at::kFloat);
    layers.push_back(std::move(l));
  }
  finalNorm = weights.get("encoder.final_layer_norm.weight", {d});
}

std::unique_ptr<Umt5Encoder> Umt5Encoder::load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx) {
  TextEncoderConfig config = readTextEncoderConfig(dir + "/config.json");
  WeightLoader weights(TensorStore::openFolder(dir), dtype, device, ctx);
  auto encoder = std::make_unique<Umt5Encoder>(config, weights);
  weights.finish();
  return encoder;
}

void Umt5Encoder::forEachWeight(const std::function<void(at::Tensor&)>& fn) {
  fn(embedTokens);
  fn(finalNorm);
  for (Layer& l : layers)
    for (at::Tensor* t : {&l.attentionNorm, &l.q, &l.k, &l.v, &l.o, &l.relativeAttentionBias, &l.ffnNorm, &l.wi0, &l.wi1, &l.wo}) fn(*t);
}

int64_t Umt5Encoder::parameterCount() const {
  int64_t n = 0;
  const_cast<Umt5Encoder*>(this)->forEachWeight([&](at::Tensor& t) { n += t.numel(); });
  return n;
}

void Umt5Encoder::to(at::Device device) {
  leave();
  if (device == device_) return;
  forEachWeight([&](at::Tensor& t) { t = t.to(device); });
  device_ = device;
}

void Umt5Encoder::visit(at::Device device) {
  device_ = visit_.enter([&](const DeviceVisit::WeightFn& fn) { forEachWeight(fn); }, device_, device);
}

void Umt5Encoder::leave() {
  device_ = visit_.leave([&](const DeviceVisit::WeightFn& fn) { forEachWeight(fn); }, device_);
}

// T5 RMSNorm: the mean square in float32, normalized values rounded to a half-precision weight's
// dtype before the scale (as transformers does), no mean subtraction, no bias.
at::Tensor Umt5Encoder::rmsNorm(const at::Tensor& x, const at::Tensor& weight) const {
  at::Tensor variance = x.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor normed = x * at::rsqrt(variance + config_.eps);
  if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16) normed = normed.to(weight.scalar_type());
  return weight * normed;
}

at::Tensor Umt5Encoder::selfAttention(const Layer& l, const at::Tensor& x, const at::Tensor& buckets, const at::Tensor& keyMaskBias) const {
  const int64_t B = x.size(0), L = x.size(1), H = config_.numHeads, dk = config_.dKv;
  at::Tensor h = rmsNorm(x, l.attentionNorm);
  auto heads = [&](const at::Tensor& w) { return at::linear(h, w).view({B, L, H, dk}).transpose(1, 2); };  // [B,H,L,dk]
  at::Tensor q = heads(l.q), k = heads(l.k), v = heads(l.v);
  // No 1/sqrt(dk) scaling: T5 folds it into the initialization of q.
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2));  // [B,H,L,L]
  at::Tensor positionBias = at::embedding(l.relativeAttentionBias, buckets).permute({2, 0, 1}).unsqueeze(0);  // [1,H,L,L]
  scores = scores + (positionBias + keyMaskBias);
  at::Tensor weights = at::softmax(scores.to(at::kFloat), -1).to(scores.scalar_type());
  at::Tensor context = at::matmul(weights, v).transpose(1, 2).reshape({B, L, H * dk});
  return at::linear(context, l.o);
}

// Gated GELU(tanh): gelu(wi_0 h) * (wi_1 h), then wo (a float32 weight) on float32 inputs.
at::Tensor Umt5Encoder::feedForward(const Layer& l, const at::Tensor& x) const {
  at::Tensor h = rmsNorm(x, l.ffnNorm);
  at::Tensor gated = at::gelu(at::linear(h, l.wi0), "tanh") * at::linear(h, l.wi1);
  return at::linear(gated.to(l.wo.scalar_type()), l.wo);
}

at::Tensor relativePositionBuckets(int64_t length, int64_t numBuckets, int64_t maxDistance) {
  at::Tensor pos = at::arange(length, at::kLong);
  at::Tensor relative = pos.unsqueeze(0) - pos.unsqueeze(1);  // key - query
  const int64_t half = numBuckets / 2;                          // bidirectional: one half per direction
  at::Tensor buckets = relative.gt(0).to(at::kLong) * half;
  relative = relative.abs();
  const int64_t maxExact = half / 2;
  at::Tensor isSmall = relative.lt(maxExact);
  // Same float32 arithmetic as the reference so bucket edges agree exactly (clamp only avoids
  // log(0) at positions that take the exact branch anyway).
  at::Tensor logRatio = at::log(relative.clamp_min(1).to(at::kFloat) / static_cast<double>(maxExact)) /
                        std::log(static_cast<double>(maxDistance) / static_cast<double>(maxExact));
  at::Tensor large = (logRatio * static_cast<double>(half - maxExact)).to(at::kLong) + maxExact;
  large = large.clamp_max(half - 1);
  return buckets + at::where(isSmall, relative, large);
}

at::Tensor Umt5Encoder::encode(const at::Tensor& idsIn, const at::Tensor& maskIn, const RunContext* ctx) const {
  c10::InferenceMode inference;
  if (idsIn.dim() != 2 || at::isFloatingType(idsIn.scalar_type()) || idsIn.scalar_type() == at::kBool)
    throwBadArgument("inputIds must be an integer tensor [B, L], got " + std::string(c10::toString(idsIn.scalar_type())) + " with " +
                     std::to_string(idsIn.dim()) + " dims");
  if (maskIn.sizes() != idsIn.sizes()) throwBadArgument("attentionMask must have the shape of inputIds [B, L]");
  if (idsIn.size(0) == 0 || idsIn.size(1) == 0) throwBadArgument("inputIds must not be empty");
  at::Tensor ids = idsIn.to(at::kCPU, at::kLong);
  int64_t minId = ids.min().item<int64_t>(), maxId = ids.max().item<int64_t>();
  if (minId < 0 || maxId >= config_.vocabSize)
    throwBadArgument("inputIds hold token id " + std::to_string(minId < 0 ? minId : maxId) + " outside the vocabulary [0, " +
                     std::to_string(config_.vocabSize) + ")");
  at::Tensor realKeys = maskIn.to(at::kCPU).gt(0);
  if (realKeys.sum(1).min().item<int64_t>() == 0)
    throwBadArgument("attentionMask has a row without real tokens (an empty prompt still holds EOS)");

  const int64_t B = ids.size(0), L = ids.size(1);
  at::Tensor buckets = relativePositionBuckets(L, config_.relativeAttentionNumBuckets, config_.relativeAttentionMaxDistance).to(device_);
  // Padded keys get the dtype's most negative value added to their scores.
  at::Tensor keyMaskBias = at::where(realKeys, at::zeros({}, at::kFloat), at::full({}, mostNegative(dtype_), at::kFloat))
                               .to(device_, dtype_)
                               .view({B, 1, 1, L});

  at::Tensor x = at::embedding(embedTokens, ids.to(device_));  // no embedding scaling in T5
  for (const Layer& layer : layers) {
    if (ctx) ctx->checkCancelled();
    // Residuals follow torch type promotion: the float32 wo output turns the stream float32.
    x = clampHalfOverflow(x + selfAttention(layer, x, buckets, keyMaskBias));
    x = clampHalfOverflow(x + feedForward(layer, x));
  }
  return rmsNorm(x, finalNorm).to(at::kFloat);
}

at::Tensor zeroPastPromptLengths(const at::Tensor& hidden, const at::Tensor& mask) {
  if (hidden.dim() != 3 || mask.dim() != 2 || mask.size(0) != hidden.size(0) || mask.size(1) != hidden.size(1))
    throwBadArgument("zeroPastPromptLengths: hidden [B, L, D] and mask [B, L] must agree");
  at::Tensor lengths = mask.gt(0).sum(1).to(hidden.device());  // [B]
  at::Tensor positions = at::arange(hidden.size(1), at::TensorOptions().dtype(at::kLong).device(hidden.device()));
  at::Tensor keep = positions.unsqueeze(0).lt(lengths.unsqueeze(1)).unsqueeze(2);  // [B, L, 1]
  return hidden.masked_fill(keep.logical_not(), 0);  // exact zeros, whatever the rows held
}

}  // namespace wan
