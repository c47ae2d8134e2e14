#include "device.h"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/Parallel.h>

#include <thread>

#ifdef WAN_WITH_CUDA
#include <ATen/cuda/CachingHostAllocator.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#include <torch/version.h>
#endif

#include "errors.h"

namespace wan {

int cudaDeviceCount() { return at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0; }

bool cudaAvailable() { return cudaDeviceCount() > 0; }

std::string cudaUnavailableReason() {
#ifndef WAN_WITH_CUDA
  return "this wan-video build has no CUDA (it was built against a CPU libtorch); rebuild against a CUDA "
         "libtorch (see README)";
#else
  if (cudaDeviceCount() > 0) return "";
  // libtorch counts 0 devices whatever went wrong; the runtime's own call says what did.
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  (void)cudaGetLastError();
  const std::string said = status == cudaSuccess ? "it counts 0 devices" : cudaGetErrorString(status);
  return "this CUDA build of wan-video sees no CUDA device (the CUDA runtime says: " + said +
         "); check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES";
#endif
}

void releaseCachedDeviceMemory(at::Device device) {
#ifdef WAN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

void releaseCachedPinnedMemory() {
#ifdef WAN_WITH_CUDA
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 7)
  at::getHostAllocator(at::kCUDA)->empty_cache();  // the device-generic host allocator (torch >= 2.7)
#else
  at::cuda::CachingHostAllocator_emptyCache();
#endif
#endif
}

void setAllowTF32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

at::Device parseDevice(const std::string& name, const std::string& option) {
  if (name == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (name == "cuda") {
    index = 0;
  } else if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(name.substr(5));
  } else {
    throwBadArgument("option '" + option + "' is '" + name + "'; allowed: 'cpu', 'cuda', 'cuda:N'");
  }
  const int n = cudaDeviceCount();
  if (n == 0)
    throw WanError(ErrorCode::NoCuda,
                   "option '" + option + "' asks for " + name + " but " + cudaUnavailableReason() + ", or use device 'cpu'");
  if (index >= n)
    throw WanError(ErrorCode::NoCuda, "option '" + option + "' asks for " + name + " but " + std::to_string(n) +
                                          " CUDA device(s) are visible; use device 'cpu' or a valid index");
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::ScalarType parseDtype(const std::string& name, const std::string& option) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throwBadArgument("option '" + option + "' is '" + name + "'; allowed: 'float32', 'bfloat16', 'float16'");
}

std::string dtypeToName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return c10::toString(t);
  }
}

void configureThreads() {
  unsigned n = std::thread::hardware_concurrency();
  if (n > 0) at::set_num_threads(static_cast<int>(n));
}

}  // namespace wan
