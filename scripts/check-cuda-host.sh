#!/usr/bin/env bash
# Compiles (syntax only) the host C++ that exists only in CUDA builds: every native .cpp with a
# WAN_WITH_CUDA branch, or including a header that has one, with -DWAN_WITH_CUDA=1, against a
# libtorch's headers (they ship c10/cuda and ATen/cuda even in CPU packages) and the CUDA
# toolkit's headers. CPU machines cannot build or link the CUDA path; this keeps its code compiling.
#
#   scripts/check-cuda-host.sh                 Debian's /usr/include libtorch (CI), else a python torch
#   TORCH_INCLUDE=<torch>/include scripts/check-cuda-host.sh     another libtorch's headers
#   CUDA_INCLUDE=/usr/local/cuda/include (default)
# Skips (exit 0) with a message when no CUDA headers exist; exits non-zero on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."

cuda_inc="${CUDA_INCLUDE:-/usr/local/cuda/include}"
if [[ ! -f "$cuda_inc/cuda_runtime_api.h" ]]; then
  echo "check-cuda-host: SKIPPED: no CUDA headers in $cuda_inc (set CUDA_INCLUDE); the CUDA host code was not compiled"
  exit 0
fi
torch_inc="${TORCH_INCLUDE:-}"
if [[ -z "$torch_inc" ]]; then
  if [[ -f /usr/include/ATen/ATen.h ]]; then torch_inc=/usr/include
  else torch_inc="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))' 2>/dev/null || true)"; fi
fi
if [[ -z "$torch_inc" || ! -f "$torch_inc/c10/cuda/CUDAStream.h" ]]; then
  echo "check-cuda-host: SKIPPED: no libtorch headers with c10/cuda (set TORCH_INCLUDE)"
  exit 0
fi

# A CPU libtorch package lacks the one header CMake generates for c10_cuda: give the CUDA build's.
gen_inc="$(mktemp -d)"
trap 'rm -rf "$gen_inc"' EXIT
if [[ ! -f "$torch_inc/c10/cuda/impl/cuda_cmake_macros.h" ]]; then
  mkdir -p "$gen_inc/c10/cuda/impl"
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$gen_inc/c10/cuda/impl/cuda_cmake_macros.h"
fi

# The translation units that differ in a CUDA build.
mapfile -t sources < <(grep -rlE 'WAN_WITH_CUDA|kernels/modulation\.h|tool_support\.h' native --include='*.cpp' | sort)
sources+=(native/kernels/*.cpp)
mapfile -t sources < <(printf '%s\n' "${sources[@]}" | sort -u)
napi=(-Inode_modules/node-addon-api -Inode_modules/node-api-headers/include -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS
      -DNODE_ADDON_API_DISABLE_DEPRECATED)

# /usr/include is a system dir already; naming it again would break libstdc++'s #include_next.
torch_dirs=(-isystem "$torch_inc/torch/csrc/api/include")
[[ "$torch_inc" == /usr/include ]] || torch_dirs=(-isystem "$torch_inc" "${torch_dirs[@]}")

# The standard these headers need, as CMakeLists.txt picks it: C++20 where ATen.h requires it (2.14+).
std=c++17
grep -q '__cplusplus < 202002L' "$torch_inc/ATen/ATen.h" && std=c++20

echo "check-cuda-host: ${#sources[@]} files, libtorch headers $torch_inc ($std), CUDA headers $cuda_inc"
for src in "${sources[@]}"; do
  "${CXX:-g++}" -std=$std -fsyntax-only -Wall -Werror -Wno-unused-function -D_GLIBCXX_USE_CXX11_ABI=1 -DWAN_WITH_CUDA=1 \
    -Inative -isystem "$gen_inc" "${torch_dirs[@]}" -isystem "$cuda_inc" "${napi[@]}" "$src"
  echo "check-cuda-host: ok $src"
done
