// Scaled dot-product attention, the one entry point every model uses. libtorch >= 2 runs
// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA); libtorch 1.13 has
// none, so an exact fallback computes softmax(q k^T / sqrt(d)) v a block of queries at a time,
// which bounds the score matrix's memory (a CPU forward at real size never holds N x N scores).
#pragma once
#include <ATen/ATen.h>

namespace wan {

// q [B, H, Sq, D], k and v [B, H, Sk, D] (same dtype and device) -> [B, H, Sq, D] in q's dtype.
// No mask, scale 1/sqrt(D).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The fallback: queries in blocks of `queryChunk` rows (0 picks a block so one block's scores
// stay near 128 MiB). Scores and softmax in float32 (float64 for float64 inputs), as fused
// kernels accumulate. Exposed for tests.
at::Tensor chunkedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t queryChunk = 0);

}  // namespace wan
