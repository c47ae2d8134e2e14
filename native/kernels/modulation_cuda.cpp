// at::Tensor wrapper of the fused LayerNorm + modulation kernel. Compiled only in CUDA builds
// (CMakeLists.txt adds native/kernels/*.cpp to the engine when WAN_WITH_CUDA).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <string>

#include "core/errors.h"
#include "kernels/layer_norm_modulate.h"
#include "kernels/modulation.h"

namespace wan {

namespace {

int kernelDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return WAN_KERNEL_F32;
    case at::kHalf: return WAN_KERNEL_F16;
    case at::kBFloat16: return WAN_KERNEL_BF16;
    default: return -1;
  }
}

// scale/shift [B, 1 or S, dim] float32 on x's device, last dim contiguous.
bool modulationOk(const at::Tensor& m, const at::Tensor& x) {
  return m.defined() && m.dim() == 3 && m.scalar_type() == at::kFloat && m.device() == x.device() &&
         m.size(0) == x.size(0) && (m.size(1) == 1 || m.size(1) == x.size(1)) && m.size(2) == x.size(2) &&
         (m.size(2) == 1 || m.stride(2) == 1);
}

}  // namespace

bool fusedLayerNormModulateApplies(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, at::ScalarType outDtype) {
  return x.defined() && x.is_cuda() && x.dim() == 3 && kernelDtype(x.scalar_type()) >= 0 && outDtype == x.scalar_type() &&
         x.size(2) > 0 && modulationOk(scale, x) && modulationOk(shift, x);
}

at::Tensor fusedLayerNormModulate(const at::Tensor& xIn, const at::Tensor& scale, const at::Tensor& shift, double eps) {
  const c10::cuda::CUDAGuard guard(xIn.device());
  const at::Tensor x = xIn.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  // A broadcast token dimension (size 1) has token stride 0 for the kernel.
  auto tokenStride = [](const at::Tensor& m) { return m.size(1) == 1 ? int64_t{0} : m.stride(1); };
  const int rc = wan_layer_norm_modulate(x.data_ptr(), out.data_ptr(), kernelDtype(x.scalar_type()), scale.data_ptr<float>(),
                                         scale.stride(0), tokenStride(scale), shift.data_ptr<float>(), shift.stride(0),
                                         tokenStride(shift), x.size(0), x.size(1), x.size(2), static_cast<float>(eps),
                                         c10::cuda::getCurrentCUDAStream().stream());
  // A GPU this build has no code for (older than sm_80, or a TORCH_CUDA_ARCH_LIST that left it
  // out): the reference formulas instead, as WAN_FUSED_KERNELS=0 would run. The failed launch costs
  // microseconds and leaves no sticky error.
  if (rc == static_cast<int>(cudaErrorNoKernelImageForDevice)) return layerNormModulateReference(xIn, scale, shift, eps, xIn.scalar_type());
  if (rc != 0)
    throw WanError(ErrorCode::Internal, std::string("fused layer-norm modulation kernel failed: ") + wan_kernels_error_string(rc));
  return out;
}

}  // namespace wan
