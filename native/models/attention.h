// Scaled dot-product attention, the one entry point every model uses. libtorch >= 2 runs
// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA); libtorch 1.13 has
// none, so an exact fallback computes softmax(q k^T / sqrt(d)) v a block of queries at a time,
// which bounds the score matrix's memory (a CPU forward at real size never holds N x N scores).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace wan {

// q [B, H, Sq, D], k and v [B, H, Sk, D] (same dtype and device) -> [B, H, Sq, D] in q's dtype.
// No mask, scale 1/sqrt(D).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// libtorch's SDPA backends by name: "math", "flash_attention", "efficient_attention",
// "cudnn_attention" (also "flash", "efficient", "cudnn").
//
// Puts `preferred` first, in that order, in the list at::scaled_dot_product_attention tries (the
// rest follow in libtorch's default order; a backend that cannot take an input is skipped, as
// always). Process-wide. Empty: libtorch's default order (flash, efficient, math, cudnn). Returns
// false where libtorch cannot order its backends (< 2.6): its default order holds. Unknown names
// are ERR_WAN_BAD_ARGUMENT. The environment variable WAN_SDPA_ORDER (e.g. "cudnn,flash") is
// applied this way on the first attention() call, unless an order was set before.
bool setAttentionBackendOrder(const std::vector<std::string>& preferred);
// The same from a comma-separated list ("cudnn,flash"), as WAN_SDPA_ORDER and wan_bench take it.
bool setAttentionBackendOrder(const std::string& commaList);

// The backend at::scaled_dot_product_attention picks for these inputs under the current order
// ("chunked_fallback" with libtorch 1.x, which has no SDPA).
std::string attentionBackendFor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The fallback: queries in blocks of `queryChunk` rows (0 picks a block so one block's scores
// stay near 128 MiB). Scores and softmax in float32 (float64 for float64 inputs), as fused
// kernels accumulate. Exposed for tests.
at::Tensor chunkedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t queryChunk = 0);

}  // namespace wan
