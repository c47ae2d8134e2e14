// Fused LayerNorm (no affine) + modulation, see layer_norm_modulate.h for the contract.
//
// Why: unfused, the block's "layer_norm(x.float()) * (1 + scale) + shift, .to(bf16)" reads and
// writes the [tokens, dim] activation ~6 times in float32 (upcast, norm, mul, add, downcast); at
// 75,600 tokens x 5120 that is ~9 GB of traffic per call, 3 calls per block. Fused, x is read once
// and the result written once (1.5 GB), with scale/shift rows coming from L2.
//
// Layout: one thread block per row (token). The fast path keeps the row in registers: each thread
// loads up to kIters 16-byte vectors (8 bf16/fp16 or 4 float), the mean and then the variance
// of the deviations (two passes over registers, no E[x^2]-mean^2 cancellation) are block
// reductions, and the output is written with 16-byte stores. Rows that do not fit (dim > 8192
// for 2-byte types) or pointers that are not 16-byte aligned take a generic kernel that walks
// the row three times (L1/L2-resident).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "layer_norm_modulate.h"

namespace {

constexpr int kThreads = 128;  // 4 warps per row
constexpr int kWarps = kThreads / 32;

// 16 bytes of T <-> floats.
template <typename T>
struct Vec;

template <>
struct Vec<float> {
  static constexpr int kSize = 4;
  __device__ static void toFloat(const uint4& v, float* f) {
    f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y), f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
  }
  __device__ static uint4 fromFloat(const float* f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
};

// bfloat16 -> float is exact (the top 16 bits of a float); float -> bfloat16 rounds to nearest even.
__device__ inline uint32_t packBf16(float lo, float hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
}

template <>
struct Vec<__nv_bfloat16> {
  static constexpr int kSize = 8;
  __device__ static void toFloat(const uint4& v, float* f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  __device__ static uint4 fromFloat(const float* f) {
    return make_uint4(packBf16(f[0], f[1]), packBf16(f[2], f[3]), packBf16(f[4], f[5]), packBf16(f[6], f[7]));
  }
};

__device__ inline uint32_t packHalf(float lo, float hi) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
         (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

template <>
struct Vec<__half> {
  static constexpr int kSize = 8;
  __device__ static void toFloat(const uint4& v, float* f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] & 0xffffu)));
      f[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(w[i] >> 16)));
    }
  }
  __device__ static uint4 fromFloat(const float* f) {
    return make_uint4(packHalf(f[0], f[1]), packHalf(f[2], f[3]), packHalf(f[4], f[5]), packHalf(f[6], f[7]));
  }
};

// One element of T <-> float (generic path).
__device__ inline float toFloat(float v) { return v; }
__device__ inline float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float toFloat(__half v) { return __half2float(v); }
template <typename T>
__device__ inline T fromFloat(float v);
template <>
__device__ inline float fromFloat<float>(float v) { return v; }
template <>
__device__ inline __nv_bfloat16 fromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ inline __half fromFloat<__half>(float v) { return __float2half_rn(v); }

// Sum of v over the thread block (every thread gets the total). `scratch` holds one float per warp.
template <int kBlockWarps>
__device__ inline float blockSum(float v, float* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  __syncthreads();  // the previous call's readers are done with scratch
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kBlockWarps; ++w) total += scratch[w];
  return total;
}

template <typename T, int kIters>
__global__ void __launch_bounds__(kThreads) layerNormModulateVec(const T* __restrict__ x, T* __restrict__ out,
                                                                 const float* __restrict__ scale, int64_t scaleB, int64_t scaleT,
                                                                 const float* __restrict__ shift, int64_t shiftB, int64_t shiftT,
                                                                 int64_t tokens, int dim, float eps) {
  constexpr int kV = Vec<T>::kSize;
  __shared__ float scratch[kWarps];
  const int64_t row = blockIdx.x;
  const int64_t b = row / tokens, s = row - b * tokens;
  const int nvec = dim / kV;
  const uint4* xRow = reinterpret_cast<const uint4*>(x + row * dim);

  // All loads are independent and issued before the first use.
  uint4 raw[kIters];
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int idx = i * kThreads + threadIdx.x;
    raw[i] = idx < nvec ? xRow[idx] : make_uint4(0, 0, 0, 0);
  }
  float v[kIters][kV];
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    Vec<T>::toFloat(raw[i], v[i]);
#pragma unroll
    for (int k = 0; k < kV; ++k) sum += v[i][k];  // padding lanes hold zeros
  }
  const float mean = blockSum<kWarps>(sum, scratch) / static_cast<float>(dim);

  float squares = 0.f;
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    if (i * kThreads + static_cast<int>(threadIdx.x) < nvec) {
#pragma unroll
      for (int k = 0; k < kV; ++k) {
        const float d = v[i][k] - mean;
        squares += d * d;
      }
    }
  }
  const float rstd = rsqrtf(blockSum<kWarps>(squares, scratch) / static_cast<float>(dim) + eps);

  const float4* scaleRow = reinterpret_cast<const float4*>(scale + b * scaleB + s * scaleT);
  const float4* shiftRow = reinterpret_cast<const float4*>(shift + b * shiftB + s * shiftT);
  uint4* outRow = reinterpret_cast<uint4*>(out + row * dim);
#pragma unroll
  for (int i = 0; i < kIters; ++i) {
    const int idx = i * kThreads + threadIdx.x;
    if (idx < nvec) {
      float y[kV];
#pragma unroll
      for (int c = 0; c < kV / 4; ++c) {
        const float4 sc = scaleRow[idx * (kV / 4) + c];
        const float4 sh = shiftRow[idx * (kV / 4) + c];
        y[4 * c + 0] = (v[i][4 * c + 0] - mean) * rstd * (1.f + sc.x) + sh.x;
        y[4 * c + 1] = (v[i][4 * c + 1] - mean) * rstd * (1.f + sc.y) + sh.y;
        y[4 * c + 2] = (v[i][4 * c + 2] - mean) * rstd * (1.f + sc.z) + sh.z;
        y[4 * c + 3] = (v[i][4 * c + 3] - mean) * rstd * (1.f + sc.w) + sh.w;
      }
      outRow[idx] = Vec<T>::fromFloat(y);
    }
  }
}

constexpr int kGenericThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kGenericThreads) layerNormModulateGeneric(const T* __restrict__ x, T* __restrict__ out,
                                                                            const float* __restrict__ scale, int64_t scaleB, int64_t scaleT,
                                                                            const float* __restrict__ shift, int64_t shiftB, int64_t shiftT,
                                                                            int64_t tokens, int dim, float eps) {
  __shared__ float scratch[kGenericThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t b = row / tokens, s = row - b * tokens;
  const T* xRow = x + row * dim;
  float sum = 0.f;
  for (int j = threadIdx.x; j < dim; j += kGenericThreads) sum += toFloat(xRow[j]);
  const float mean = blockSum<kGenericThreads / 32>(sum, scratch) / static_cast<float>(dim);
  float squares = 0.f;
  for (int j = threadIdx.x; j < dim; j += kGenericThreads) {
    const float d = toFloat(xRow[j]) - mean;
    squares += d * d;
  }
  const float rstd = rsqrtf(blockSum<kGenericThreads / 32>(squares, scratch) / static_cast<float>(dim) + eps);
  const float* scaleRow = scale + b * scaleB + s * scaleT;
  const float* shiftRow = shift + b * shiftB + s * shiftT;
  T* outRow = out + row * dim;
  for (int j = threadIdx.x; j < dim; j += kGenericThreads)
    outRow[j] = fromFloat<T>((toFloat(xRow[j]) - mean) * rstd * (1.f + scaleRow[j]) + shiftRow[j]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T, int kIters>
void launchVec(const T* x, T* out, const float* scale, int64_t sB, int64_t sT, const float* shift, int64_t hB, int64_t hT,
               int64_t rows, int64_t tokens, int dim, float eps, cudaStream_t stream) {
  layerNormModulateVec<T, kIters><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, out, scale, sB, sT, shift, hB, hT, tokens, dim, eps);
}

template <typename T>
int launch(const void* xv, void* outv, const float* scale, int64_t sB, int64_t sT, const float* shift, int64_t hB, int64_t hT,
           int64_t batch, int64_t tokens, int64_t dim64, float eps, cudaStream_t stream) {
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  const int64_t rows = batch * tokens;
  if (rows == 0 || dim64 == 0) return 0;
  if (dim64 > (1 << 30) || rows > 0x7fffffffLL) return static_cast<int>(cudaErrorInvalidValue);
  const int dim = static_cast<int>(dim64);
  constexpr int kV = Vec<T>::kSize;
  // float4 scale/shift loads need every row start 16-byte aligned: strides in multiples of 4 floats.
  const bool vectorizable = dim % kV == 0 && aligned16(x) && aligned16(out) && aligned16(scale) && aligned16(shift) &&
                            sB % 4 == 0 && sT % 4 == 0 && hB % 4 == 0 && hT % 4 == 0;
  const int iters = (dim / kV + kThreads - 1) / kThreads;
  if (vectorizable && iters <= 8) {
    switch (iters) {
      case 1: launchVec<T, 1>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;
      case 2: launchVec<T, 2>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;
      case 3: launchVec<T, 3>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;  // 3072 bf16 (TI2V-5B)
      case 4: launchVec<T, 4>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;
      case 5: launchVec<T, 5>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;  // 5120 bf16 (A14B)
      case 6: launchVec<T, 6>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;
      default: launchVec<T, 8>(x, out, scale, sB, sT, shift, hB, hT, rows, tokens, dim, eps, stream); break;
    }
  } else {
    layerNormModulateGeneric<T><<<static_cast<unsigned>(rows), kGenericThreads, 0, stream>>>(x, out, scale, sB, sT, shift, hB, hT, tokens, dim, eps);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

extern "C" int wan_layer_norm_modulate(const void* x, void* out, int dtype, const float* scale, int64_t scaleBatchStride,
                                       int64_t scaleTokenStride, const float* shift, int64_t shiftBatchStride,
                                       int64_t shiftTokenStride, int64_t batch, int64_t tokens, int64_t dim, float eps,
                                       void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case WAN_KERNEL_F32:
      return launch<float>(x, out, scale, scaleBatchStride, scaleTokenStride, shift, shiftBatchStride, shiftTokenStride, batch, tokens, dim, eps, s);
    case WAN_KERNEL_F16:
      return launch<__half>(x, out, scale, scaleBatchStride, scaleTokenStride, shift, shiftBatchStride, shiftTokenStride, batch, tokens, dim, eps, s);
    case WAN_KERNEL_BF16:
      return launch<__nv_bfloat16>(x, out, scale, scaleBatchStride, scaleTokenStride, shift, shiftBatchStride, shiftTokenStride, batch, tokens, dim, eps, s);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

extern "C" const char* wan_kernels_error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }
