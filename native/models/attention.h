// Scaled dot-product attention, the one entry point every model uses. libtorch >= 2 runs
// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA); libtorch 1.13 has
// none, so an exact fallback computes softmax(q k^T / sqrt(d)) v a block of queries at a time,
// which bounds the score matrix's memory (a CPU forward at real size never holds N x N scores).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/run_context.h"

namespace wan {

// q [B, H, Sq, D], k and v [B, H, Sk, D] (same dtype and device) -> [B, H, Sq, D] in q's dtype.
// No mask, scale 1/sqrt(D). `ctx`: the fallback checks it for cancellation between query blocks.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const RunContext* ctx = nullptr);

// libtorch's SDPA backends by name: "math", "flash_attention", "efficient_attention",
// "cudnn_attention" (also "flash", "efficient", "cudnn").
//
// Puts `preferred` first, in that order, in the list at::scaled_dot_product_attention tries on CUDA
// (the rest follow in libtorch's own order; a backend that cannot take an input is skipped, as
// always; libtorch's CPU dispatch ignores the list: flash, then math). Process-wide. Empty: libtorch's own order. Returns false where libtorch cannot order its backends
// (< 2.6): its default order holds. Unknown names are ERR_WAN_BAD_ARGUMENT. The environment
// variable WAN_SDPA_ORDER (e.g. "cudnn,flash") is applied this way on the first attention() call,
// unless an order was set before.
//
// libtorch's own order: flash, efficient, math, cudnn; but a CUDA libtorch >= 2.10 replaces it on
// its first CUDA SDPA call by cuDNN first where cuDNN > 9.15 runs on sm90/sm100 (unless
// TORCH_CUDNN_SDPA_DEPRIORITIZED=1), over any order set before. attention() and
// attentionBackendFor() therefore let libtorch make that choice before their first CUDA call and
// then put the asked-for order back over it.
bool setAttentionBackendOrder(const std::vector<std::string>& preferred);
// The same from a comma-separated list ("cudnn,flash"), as WAN_SDPA_ORDER and wan_bench take it.
bool setAttentionBackendOrder(const std::string& commaList);

// The order libtorch tries its backends in now, by name (math, flash_attention,
// efficient_attention, cudnn_attention); empty where libtorch cannot order them (< 2.6).
std::vector<std::string> attentionBackendOrder();

// Puts the asked-for order back after libtorch changed its list itself (what attention() does after
// libtorch's first CUDA choice); the rest then follow libtorch's new order. Exposed for tests.
void reapplyAttentionBackendOrder();
// Tests: sets libtorch's list directly, bypassing the asked-for order, as libtorch's own first CUDA
// choice does (the named backends first, the rest as they were). No-op where it cannot be ordered.
void overrideLibtorchBackendOrderForTest(const std::string& commaList);

// The backend at::scaled_dot_product_attention picks for these inputs under the current order
// ("chunked_fallback" with libtorch 1.x, which has no SDPA; "none" when no backend takes them).
// Never throws: the DiT records it on every forward.
std::string attentionBackendFor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The fallback: queries in blocks of `queryChunk` rows (0 picks a block so one block's scores
// stay near 128 MiB). Scores and softmax in float32 (float64 for float64 inputs), as fused
// kernels accumulate. Exposed for tests.
at::Tensor chunkedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t queryChunk = 0,
                            const RunContext* ctx = nullptr);

}  // namespace wan
