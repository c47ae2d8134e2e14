#!/usr/bin/env bash
# The GPU machine's configure and build, rehearsed on a machine without a CUDA libtorch: takes a pip
# torch (a CPU wheel will do), switches its CMake files to what a CUDA build's say (USE_CUDA on,
# imported torch_cuda / c10_cuda targets over empty stand-in libraries), and runs
# `bench/device/run.sh build` with WAN_DEVICE=cuda against the real CUDA toolkit. torch's own
# cuda.cmake then runs for real: FindCUDA, the version checks, enable_language(CUDA), the -gencode
# flags, the CUDA:: library targets (stand-ins for the nvidia/ wheels' libraries, versioned names only,
# as those wheels ship them).
#
# It builds the kernels and the engine (static libraries, no link) and checks the executables' link
# lines: the shared cudart only, and every -l name resolvable. It cannot link (the stand-ins have
# no symbols) or run anything; the GPU session does that.
#
#   scripts/simulate-cuda-build.sh /path/to/site-packages/torch [WORKDIR]   (CUDA toolkit: /usr/local/cuda)
set -euo pipefail
cd "$(dirname "$0")/.."

torch_dir="${1:?usage: scripts/simulate-cuda-build.sh <pip torch folder> [workdir]}"
work="${2:-$(mktemp -d)}"
toolkit="${CUDA_HOME:-/usr/local/cuda}"
[[ -x "$toolkit/bin/nvcc" ]] || { echo "simulate-cuda-build: no nvcc in $toolkit/bin (set CUDA_HOME)"; exit 2; }
[[ -f "$torch_dir/share/cmake/Torch/TorchConfig.cmake" ]] || { echo "simulate-cuda-build: $torch_dir is not a pip torch folder"; exit 2; }
echo "simulate-cuda-build: torch $torch_dir, toolkit $toolkit, work $work"

fake="$work/torch"
rm -rf "$fake" "$work/nvidia" && mkdir -p "$fake/lib" "$work/nvidia"
cp -r "$torch_dir/share" "$torch_dir/include" "$fake/"
for lib in "$torch_dir"/lib/*.so*; do ln -s "$lib" "$fake/lib/"; done
# The one header a CUDA build generates for c10_cuda.
mkdir -p "$fake/include/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$fake/include/c10/cuda/impl/cuda_cmake_macros.h"
echo '' >"$work/empty.c"
for name in torch_cuda c10_cuda; do gcc -shared -o "$fake/lib/lib$name.so" "$work/empty.c"; done
for pair in cublas:cublas cublas:cublasLt cuda_nvrtc:nvrtc cufft:cufft curand:curand cusparse:cusparse cusolver:cusolver \
            nvjitlink:nvJitLink cufile:cufile; do
  mkdir -p "$work/nvidia/${pair%%:*}/lib"
  gcc -shared -o "$work/nvidia/${pair%%:*}/lib/lib${pair#*:}.so.13" "$work/empty.c"
done

# What a CUDA wheel's CMake files say that a CPU wheel's do not.
cmake_dir="$fake/share/cmake"
sed -i 's/set(CAFFE2_USE_CUDA 0)/set(CAFFE2_USE_CUDA 1)/; s/^  if( AND NOT CAFFE2_USE_CUDA)/  if(1 AND NOT CAFFE2_USE_CUDA)/' "$cmake_dir/Caffe2/Caffe2Config.cmake"
python3 - "$cmake_dir" <<'EOF'
import re, sys
d = sys.argv[1]
# The CUDA section of Caffe2Config (the first "if(0)" before CAFFE2_USE_CUDA) and of TorchConfig.
p = f"{d}/Caffe2/Caffe2Config.cmake"; s = open(p).read()
i = s.index("set(CAFFE2_USE_CUDA 1)"); j = s.rindex("if(0)", 0, i)
open(p, "w").write(s[:j] + "if(1)" + s[j + 5:])
p = f"{d}/Torch/TorchConfig.cmake"; s = open(p).read()
i = s.index("set(TORCH_CUDA_LIBRARIES"); j = s.rindex("if(0)", 0, i)
open(p, "w").write(s[:j] + "if(1)" + s[j + 5:])
p = f"{d}/Caffe2/Caffe2Targets.cmake"; s = open(p).read()
cuda_targets = '''add_library(c10_cuda SHARED IMPORTED)
set_target_properties(c10_cuda PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_IMPORT_PREFIX}/include" INTERFACE_LINK_LIBRARIES "c10;torch::cudart")
add_library(torch_cuda SHARED IMPORTED)
set_target_properties(torch_cuda PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_IMPORT_PREFIX}/include"
  INTERFACE_LINK_LIBRARIES "torch::cudart;c10_cuda;torch_cpu_library")
add_library(torch_cuda_library INTERFACE IMPORTED)
set_target_properties(torch_cuda_library PROPERTIES
  INTERFACE_LINK_LIBRARIES "-Wl,--no-as-needed,\\"\\$<TARGET_FILE:torch_cuda>\\" -Wl,--as-needed;\\$<TARGET_PROPERTY:torch_cuda,INTERFACE_LINK_LIBRARIES>")

# Create imported target torch
'''
s = s.replace("# Create imported target torch\n", cuda_targets, 1)
s = re.sub(r'(set_target_properties\(torch PROPERTIES\n  INTERFACE_LINK_LIBRARIES ")torch_cpu_library"', r'\1torch_cpu_library;torch_cuda_library"', s)
open(p, "w").write(s)
p = f"{d}/Caffe2/Caffe2Targets-release.cmake"
with open(p, "a") as f:
    for n in ("c10_cuda", "torch_cuda"):
        f.write(f'\nset_property(TARGET {n} APPEND PROPERTY IMPORTED_CONFIGURATIONS RELEASE)\n'
                f'set_target_properties({n} PROPERTIES IMPORTED_LOCATION_RELEASE "${{_IMPORT_PREFIX}}/lib/lib{n}.so" IMPORTED_SONAME_RELEASE "lib{n}.so")\n')
EOF

# The device's python, as run.sh asks it: the torch CMake prefix and where the nvidia/ wheels are.
cat >"$work/python" <<EOF
#!/bin/sh
case "\$*" in
  *cmake_prefix_path*) echo "$cmake_dir" ;;
  *"import nvidia"*) echo "$work" ;;
  *) exec python3 "\$@" ;;
esac
EOF
chmod +x "$work/python"

export CUDA_HOME="$toolkit"
WAN_DEVICE=cuda PYTHON="$work/python" WAN_DEVICE_WORK="$work/device" OUT="$work/out" JOBS="${JOBS:-$(nproc)}" \
  BUILD_TARGETS="wan_kernels wan_engine" bench/device/run.sh build

# The link line the executables would get (not run: the stand-ins have no symbols).
link="$(cd "$work/device/build" && ninja -t commands wan_bench | tail -1)"
status=0
if grep -q "cudart_static" <<<"$link"; then echo "simulate-cuda-build: FAIL: the link line has the static cudart"; status=1; fi
grep -q -- "-lcudart\|libcudart.so" <<<"$link" || { echo "simulate-cuda-build: FAIL: no shared cudart in the link line"; status=1; }
mapfile -t dirs < <(grep -o -- "-L[^ ]*" <<<"$link")
for l in $(grep -o -- " -l[A-Za-z0-9_]*" <<<"$link" | sort -u); do
  if ! gcc -shared -o /dev/null "${dirs[@]}" "$l" "$work/empty.c" 2>/dev/null; then
    echo "simulate-cuda-build: FAIL: $l in the link line resolves to nothing"; status=1
  fi
done
[[ $status -eq 0 ]] && echo "simulate-cuda-build: ok (configure, kernels and engine built; link line: shared cudart, every -l resolvable)"
exit $status
