// The DiT's "LayerNorm (no affine) then x * (1 + scale) + shift" on at::Tensor: the fused CUDA
// kernel (layer_norm_modulate.cu) where it applies, else the reference formula with at:: ops.
// Usable from every build: without WAN_WITH_CUDA only the reference exists.
#pragma once
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>

namespace wan {

// Whether the fused CUDA kernels run where they apply: built with WAN_WITH_CUDA and not turned off
// by WAN_FUSED_KERNELS=0 (read once per process). Off, the reference formulas run everywhere: the
// switch that rules the kernels out when a GPU result looks wrong (run.sh sets it when
// `wan_run kernel-check` fails).
inline bool fusedKernelsEnabled() {
#ifdef WAN_WITH_CUDA
  static const bool enabled = [] {
    const char* v = std::getenv("WAN_FUSED_KERNELS");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled;
#else
  return false;
#endif
}

// The reference (FP32LayerNorm, float32 modulation, then the model dtype), exactly what
// WanTransformer::block computes today. x [B, S, dim]; scale and shift float32, broadcastable to
// [B, S, dim] ([B, 1, dim] or [B, S, dim]). Returns [B, S, dim] in `outDtype`.
inline at::Tensor layerNormModulateReference(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, double eps,
                                             at::ScalarType outDtype) {
  at::Tensor normed = at::layer_norm(x.to(at::kFloat), {x.size(-1)}, {}, {}, eps);
  return (normed * (scale + 1) + shift).to(outDtype);
}

#ifdef WAN_WITH_CUDA
// True when the fused kernel takes these tensors: all on one CUDA device, x [B, S, dim] in
// float32/float16/bfloat16 with outDtype == x's dtype, scale and shift float32 [B, 1 or S, dim]
// with a contiguous last dimension.
bool fusedLayerNormModulateApplies(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, at::ScalarType outDtype);
// The fused kernel on the current CUDA stream (callers check fusedLayerNormModulateApplies).
at::Tensor fusedLayerNormModulate(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, double eps);
#endif

// The fused kernel when it applies and is enabled, else the reference.
inline at::Tensor layerNormModulate(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, double eps,
                                    at::ScalarType outDtype) {
#ifdef WAN_WITH_CUDA
  if (fusedKernelsEnabled() && fusedLayerNormModulateApplies(x, scale, shift, outDtype)) return fusedLayerNormModulate(x, scale, shift, eps);
#endif
  return layerNormModulateReference(x, scale, shift, eps, outDtype);
}

}  // namespace wan
