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

// "cudnn,flash" -> {"cudnn", "flash"} (empty entries dropped).
std::vector<std::string> splitNames(const std::string& commaList) {
  std::vector<std::string> names;
  std::stringstream list(commaList);
  for (std::string name; std::getline(list, name, ',');)
    if (!name.empty()) names.push_back(name);
  return names;
}

// `first` without repeats, then the entries of `rest` not in it: libtorch's list holds every backend
// once (setSDPPriorityOrder writes past its array when given more).
std::vector<int64_t> firstThenRest(const std::vector<int64_t>& first, const std::vector<int64_t>& rest) {
  std::vector<int64_t> order;
  for (const auto* list : {&first, &rest})
    for (const int64_t b : *list)
      if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  return order;
}

// The order asked for (setAttentionBackendOrder, WAN_SDPA_ORDER), kept so it can be put back: a
// CUDA libtorch >= 2.10 sets its own default on its first CUDA SDPA call (cuDNN first on sm90/sm100
// with cuDNN > 9.15), over whatever order was set before that call.
struct OrderState {
  std::mutex mutex;
  bool requested = false;            // an order was asked for (else libtorch's stays untouched)
  std::vector<int64_t> preferred;    // the backends asked for, first to last
  std::vector<int64_t> baseline;     // libtorch's own order, which the rest of ours follows
  std::vector<int64_t> lastApplied;  // what we set last (a change behind our back = libtorch's default)
  std::atomic<bool> cudaSettled{false};
};

OrderState& orderState() {
  static OrderState state;
  return state;
}

std::once_flag environmentOrderOnce;

#if WAN_SDPA_ORDERABLE
std::vector<int64_t> currentOrder() {
  std::vector<int64_t> order;
  for (const auto b : at::globalContext().sDPPriorityOrder()) order.push_back(static_cast<int64_t>(b));
  return order;
}
#endif

// Sets the preferred backends followed by the rest in libtorch's own order. Holds state.mutex.
bool applyOrder(OrderState& state) {
#if WAN_SDPA_ORDERABLE
  if (!state.requested) return true;
  const std::vector<int64_t> current = currentOrder();
  if (state.baseline.empty() || current != state.lastApplied) state.baseline = current;
  at::globalContext().setSDPPriorityOrder(firstThenRest(state.preferred, state.baseline));
  state.lastApplied = currentOrder();
  return true;
#else
  (void)state;
  return false;
#endif
}

// Before the first CUDA SDPA call: let libtorch choose its CUDA default now (a backend choice is
// enough), then put the asked-for order back over it.
void settleCudaOrder(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  OrderState& state = orderState();
  if (!q.is_cuda() || state.cudaSettled) return;
  std::lock_guard<std::mutex> lock(state.mutex);
  if (state.cudaSettled) return;
  try {
    (void)at::_fused_sdp_choice(q, k, v);
  } catch (const std::exception&) {
    // No backend takes these inputs: the SDPA call itself reports it.
  }
  applyOrder(state);
  state.cudaSettled = true;
#else
  (void)q, (void)k, (void)v;
#endif
}

// WAN_SDPA_ORDER="cudnn,flash": applied on the first attention() unless code set an order first.
void applyEnvironmentOrder() {
  const char* env = std::getenv("WAN_SDPA_ORDER");
  if (env == nullptr || *env == '\0') return;
  {
    std::lock_guard<std::mutex> lock(orderState().mutex);
    if (orderState().requested) return;
  }
  try {
    setAttentionBackendOrder(std::string(env));
  } catch (const WanError& e) {
    throwBadArgument(std::string("WAN_SDPA_ORDER: ") + e.what());
  }
}

}  // namespace

bool setAttentionBackendOrder(const std::vector<std::string>& preferred) {
  std::vector<int64_t> order;
  for (const std::string& name : preferred) order.push_back(backendNumber(name));  // all checked before anything changes
  OrderState& state = orderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.requested = true;
  state.preferred = firstThenRest(order, {});
  return applyOrder(state);
}

bool setAttentionBackendOrder(const std::string& commaList) { return setAttentionBackendOrder(splitNames(commaList)); }

std::vector<std::string> attentionBackendOrder() {
  std::vector<std::string> names;
#if WAN_SDPA_ORDERABLE
  std::lock_guard<std::mutex> lock(orderState().mutex);
  for (const int64_t b : currentOrder())
    if (b >= kMath && b <= kCudnn) names.push_back(backendName(b));
#endif
  return names;
}

void reapplyAttentionBackendOrder() {
  OrderState& state = orderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  applyOrder(state);
}

void overrideLibtorchBackendOrderForTest(const std::string& commaList) {
#if WAN_SDPA_ORDERABLE
  std::vector<int64_t> order;
  for (const std::string& name : splitNames(commaList)) order.push_back(backendNumber(name));
  std::lock_guard<std::mutex> lock(orderState().mutex);
  at::globalContext().setSDPPriorityOrder(firstThenRest(order, currentOrder()));
#else
  (void)commaList;
#endif
}

std::string attentionBackendFor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  std::call_once(environmentOrderOnce, applyEnvironmentOrder);  // the order attention() will run with
#if TORCH_VERSION_MAJOR >= 2
  settleCudaOrder(q, k, v);
  try {
    return backendName(at::_fused_sdp_choice(q, k, v));
  } catch (const std::exception&) {
    return "none";  // no backend takes these inputs (SDPA itself says why when called)
  }
#else
  (void)q, (void)k, (void)v;
  return "chunked_fallback";
#endif
}

at::Tensor chunkedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t queryChunk, const RunContext* ctx) {
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
    if (ctx) ctx->checkCancelled();  // a large grid spends minutes in here on a CPU: abort between chunks
    const int64_t len = std::min(queryChunk, sq - start);
    at::Tensor scores = at::matmul(q.narrow(2, start, len).to(compute), kT).mul_(scale);
    out.narrow(2, start, len).copy_(at::matmul(at::softmax(scores, -1), vc));
  }
  return out;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RunContext* ctx) {
  std::call_once(environmentOrderOnce, applyEnvironmentOrder);
#if TORCH_VERSION_MAJOR >= 2
  settleCudaOrder(q, k, v);
  (void)ctx;  // one fused call: nothing to check between
  return at::scaled_dot_product_attention(q, k, v);
#else
  return chunkedAttention(q, k, v, 0, ctx);
#endif
}

}  // namespace wan
