#!/usr/bin/env bash
# The CUDA build for real on a machine without a GPU: unpacks a CUDA torch wheel and its nvidia/
# wheels (no pip install, nothing else from them), builds a copy of this checkout against them the
# way a user does (LIBTORCH=<torch> cmake-js, the CUDA toolkit's nvcc), and runs the test suite on
# the CPU against that CUDA addon. What it cannot check needs a GPU: bench/device/run.sh.
#
#   scripts/cuda-build-check.sh WHEELS_DIR [WORKDIR]
#
# WHEELS_DIR holds torch-<v>-cp*-manylinux*.whl (a CUDA build, not +cpu) and the nvidia_*.whl it
# needs (a machine's local package index may have them, e.g. /opt/pypi-more/files). WORKDIR
# (default: a new temporary folder) keeps the unpacked wheels between runs. The copy is HEAD plus
# the uncommitted changes to tracked files. Needs nvcc (CUDACXX or PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

wheels="${1:?usage: scripts/cuda-build-check.sh WHEELS_DIR [WORKDIR]}"
work="${2:-$(mktemp -d)}"
site="$work/site-packages"
src="$work/src"

if [[ ! -f "$site/torch/share/cmake/Torch/TorchConfig.cmake" ]]; then
  torch_wheel="$(ls "$wheels"/torch-*-cp*-manylinux*.whl 2>/dev/null | grep -v '+cpu' | sort | tail -1 || true)"
  [[ -n "$torch_wheel" ]] || { echo "cuda-build-check: no CUDA torch wheel in $wheels"; exit 2; }
  mkdir -p "$site"
  echo "cuda-build-check: unpacking $(basename "$torch_wheel") and the nvidia wheels into $site"
  for wheel in "$torch_wheel" "$wheels"/nvidia_*.whl; do
    [[ -f "$wheel" ]] && unzip -q -o "$wheel" -d "$site" -x '*.dist-info/*'
  done
fi
ls "$site"/torch/lib/libtorch_cuda.so >/dev/null || { echo "cuda-build-check: $site/torch is not a CUDA torch"; exit 2; }

echo "cuda-build-check: copying the checkout to $src"
rm -rf "$src" && git clone -q . "$src"
git diff HEAD | (cd "$src" && git apply --allow-empty)
cp -a node_modules "$src/"

cd "$src"
LIBTORCH="$site/torch" npx cmake-js compile --CDTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" 2>&1 | grep -E "wan-video:|error|FAILED" || true
[[ -f build/Release/wan_video.node ]] || { echo "cuda-build-check: the CUDA build FAILED (run it in $src to see why)"; exit 1; }
node scripts/build-ts.mjs
node -e 'const i = require(process.argv[1]).runtimeInfo(); console.log(`cuda-build-check: addon ${i.flavour} build, libtorch ${i.libtorchVersion}, cudaAvailable ${i.cudaAvailable}`); if (i.flavour !== "cuda") process.exit(1)' \
  "$src/build/Release/wan_video.node"
npx vitest run
