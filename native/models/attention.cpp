#include "attention.h"

#include <torch/version.h>

#include <algorithm>
#include <cmath>

namespace wan {

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
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return chunkedAttention(q, k, v);
#endif
}

}  // namespace wan
