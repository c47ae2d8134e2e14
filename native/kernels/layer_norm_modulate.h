/* Fused "LayerNorm (no affine) then x * (1 + scale) + shift" of the Wan DiT block (called twice per
 * block and once in the output head). A plain C interface over raw device pointers so that the .cu
 * compiles with nvcc alone (no libtorch headers); modulation.h wraps it for at::Tensor.
 *
 *   out[b, s, :] = ((x[b, s, :] - mean) * rsqrt(var + eps)) * (1 + scale[b, s, :]) + shift[b, s, :]
 *
 * mean and the biased variance are taken over the last dimension in float32; all arithmetic is in
 * float32 and the result is rounded (to nearest even) to x's dtype, as the reference does
 * (FP32LayerNorm, float32 modulation, then .to(dtype)). */
#ifndef WAN_KERNELS_LAYER_NORM_MODULATE_H
#define WAN_KERNELS_LAYER_NORM_MODULATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of x and out (they share one). */
enum WanKernelDtype { WAN_KERNEL_F32 = 0, WAN_KERNEL_F16 = 1, WAN_KERNEL_BF16 = 2 };

/* x, out: [batch, tokens, dim], contiguous, dtype `dtype`.
 * scale, shift: float32, last dimension contiguous; element (b, s, j) at
 *   b * batchStride + s * tokenStride + j   (tokenStride 0 broadcasts one row over the tokens).
 * stream: a cudaStream_t (NULL for the default stream).
 * Returns 0 (cudaSuccess) or the cudaError_t of the launch; wan_kernels_error_string names it. */
int wan_layer_norm_modulate(const void* x, void* out, int dtype, const float* scale, int64_t scaleBatchStride,
                            int64_t scaleTokenStride, const float* shift, int64_t shiftBatchStride,
                            int64_t shiftTokenStride, int64_t batch, int64_t tokens, int64_t dim, float eps,
                            void* stream);

const char* wan_kernels_error_string(int error);

#ifdef __cplusplus
}
#endif

#endif
