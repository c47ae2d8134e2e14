// Device and dtype names as users write them ('cpu' | 'cuda' | 'cuda:N'; 'float32' | 'bfloat16' |
// 'float16'), checked against what this build and machine can do.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace wan {

// Throws ERR_WAN_BAD_ARGUMENT for unknown names and ERR_WAN_NO_CUDA when CUDA is asked for on a
// CPU-only build or a machine without that GPU. `option` names the option in messages.
at::Device parseDevice(const std::string& name, const std::string& option = "device");
at::ScalarType parseDtype(const std::string& name, const std::string& option = "dtype");
std::string dtypeToName(at::ScalarType t);

bool cudaAvailable();
int cudaDeviceCount();
// Why CUDA cannot be used, in words for a message ("" when a device is visible): a CPU build says
// so; a CUDA build that sees no GPU gives the CUDA runtime's own reason (no device, a driver too
// old or missing) and what to check.
std::string cudaUnavailableReason();

// Hands the CUDA caching allocator's unused blocks back to the driver (no-op on the CPU). The
// offload modes upload weights on a side stream, and cached blocks of one stream are not reused by
// another: without this, a dropped expert's 28.6 GB would stay reserved through the decode.
void releaseCachedDeviceMemory(at::Device device);

// Hands libtorch's cached page-locked host memory back to the system (CUDA builds; else a no-op).
// The host allocator caches freed pinned blocks for reuse, so offloaded weights would otherwise stay
// locked in RAM after their model is gone.
void releaseCachedPinnedMemory();

// TF32 in float32 matrix products (cuBLAS) and convolutions (cuDNN), Ampere and later. Off for
// parity runs: TF32 keeps 10 mantissa bits, which puts the float32 VAE's convolutions ~1e-3 off.
// Never called, libtorch's defaults hold (cuBLAS off, cuDNN on), as for the reference. Process-wide;
// the CPU has no TF32.
void setAllowTF32(bool allow);

// Sets libtorch's intra-op threads from the machine's cores (Debian's libtorch defaults to one).
void configureThreads();

}  // namespace wan
