#include "attention.h"

#include <ATen/Context.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include "core/errors.h"

// at::globalContext().setSDPPriorityOrder: libtorch >= 2.6.
#define WAN_SDPA_ORDERABLE (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6))

namespace wan {

namespace {

// libtorch's SDPBackend numbers (ATen/SDPBackend.h, also what at::_fused_sdp_choice returns).
constexpr int64_t kMath = 0, kFlash = 1, kEfficient = 2, kCudnn = 3;

int64_t backendNumber(const std::string& name) {
  if (name == "math") return kMath;
  if (name == "flash" || name == "flash_attention") return kFlash;
  if (name == "efficient" || name == "efficient_attention") return kEfficient;
  if (name == "cudnn" || name == "cudnn_attention") return kCudnn;
  throwBadArgument("unknown attention backend '" + name + "' (math, flash, efficient or cudnn)");
}

std::string backendName(int64_t b) {
  switch (b) {
    case kMath: return "math";
    case kFlash: return "flash_attention";
    case kEfficient: return "efficient_attention";
    case kCudnn: return "cudnn_attention";
    default: return "backend_" + std::to_string(b);
  }
}

std::atomic<bool> orderWasSet{false};
std::once_flag environmentOrderOnce;

// WAN_SDPA_ORDER="cudnn,flash": applied on the first attention() unless code set an order first.
void applyEnvironmentOrder() {
  const char* env = std::getenv("WAN_SDPA_ORDER");
  if (env == nullptr || *env == '\0' || orderWasSet) return;
  try {
    setAttentionBackendOrder(std::string(env));
  } catch (const WanError& e) {
    throwBadArgument(std::string("WAN_SDPA_ORDER: ") + e.what());
  }
}

}  // namespace

bool setAttentionBackendOrder(const std::vector<std::string>& preferred) {
  std::vector<int64_t> order;
  for (const std::string& name : preferred) {
    const int64_t b = backendNumber(name);  // all names checked before anything changes
    if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  }
  orderWasSet = true;
#if WAN_SDPA_ORDERABLE
  // libtorch wants every backend exactly once: the rest follow in its default order, read before
  // our first change.
  static const auto defaults = at::globalContext().sDPPriorityOrder();
  for (const auto b : defaults) {
    const auto n = static_cast<int64_t>(b);
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  }
  at::globalContext().setSDPPriorityOrder(order);
  return true;
#else
  return false;
#endif
}

bool setAttentionBackendOrder(const std::string& commaList) {
  std::vector<std::string> names;
  std::stringstream list(commaList);
  for (std::string name; std::getline(list, name, ',');)
    if (!name.empty()) names.push_back(name);
  return setAttentionBackendOrder(names);
}

std::string attentionBackendFor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return backendName(at::_fused_sdp_choice(q, k, v));
#else
  (void)q, (void)k, (void)v;
  return "chunked_fallback";
#endif
}

at::Tensor chunkedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t queryChunk) {
  const int64_t batch = q.size(0), heads = q.size(1), sq = q.size(2), headDim = q.size(3), sk = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  // Reduced-precision inputs are scored in float32: bf16 logits would lose the softmax's precision.
  const at::ScalarType compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (queryChunk <= 0) {
    const int64_t budgetBytes = int64_t(128) << 20;
    const int64_t bytesPerQuery = std::max<int64_t>(1, batch * heads * sk * static_cast<int64_t>(at::elementSize(compute)));
    queryChunk = std::max<int64_t>(1, budgetBytes / bytesPerQuery);
  }
  at::Tensor kT = k.to(compute).transpose(-2, -1);  // [B, H, D, Sk]
  at::Tensor vc = v.to(compute);
  if (queryChunk >= sq) {
    at::Tensor scores = at::matmul(q.to(compute), kT).mul_(scale);
    return at::matmul(at::softmax(scores, -1), vc).to(q.scalar_type());
  }
  at::Tensor out = at::empty({batch, heads, sq, headDim}, q.options());
  for (int64_t start = 0; start < sq; start += queryChunk) {
    const int64_t len = std::min(queryChunk, sq - start);
    at::Tensor scores = at::matmul(q.narrow(2, start, len).to(compute), kT).mul_(scale);
    out.narrow(2, start, len).copy_(at::matmul(at::softmax(scores, -1), vc));
  }
  return out;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  std::call_once(environmentOrderOnce, applyEnvironmentOrder);
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return chunkedAttention(q, k, v);
#endif
}

}  // namespace wan
