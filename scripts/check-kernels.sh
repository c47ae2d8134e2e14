#!/usr/bin/env bash
# Compiles every native/kernels/*.cu to an object for Hopper (sm_90) with nvcc, as a CI check on
# machines that have nvcc but no CUDA libtorch (the full CUDA build happens where one exists).
# Exits non-zero on the first compile error; skips (exit 0) with a message when nvcc is absent.
#   NVCC=/path/to/nvcc scripts/check-kernels.sh      (default: nvcc on PATH, then /usr/local/cuda/bin)
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc_bin="${NVCC:-$(command -v nvcc || true)}"
if [[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]]; then nvcc_bin=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$nvcc_bin" ]]; then
  echo "check-kernels: SKIPPED: nvcc not found (set NVCC or install the CUDA toolkit); native/kernels/*.cu were not compiled"
  exit 0
fi

shopt -s nullglob
sources=(native/kernels/*.cu)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "check-kernels: no native/kernels/*.cu"
  exit 0
fi

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
echo "check-kernels: $("$nvcc_bin" --version | tail -1)"
for src in "${sources[@]}"; do
  obj="$out_dir/$(basename "$src" .cu).o"
  # -Werror=all-warnings turns nvcc's own warnings into errors; -Xptxas -v would print registers.
  "$nvcc_bin" -c "$src" -o "$obj" -std=c++17 -O3 -Inative \
    -gencode=arch=compute_90,code=sm_90 -Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror
  echo "check-kernels: ok $src (sm_90, $(stat -c %s "$obj") bytes)"
done
