#!/usr/bin/env bash
# One-call GPU script: build against the machine's pip torch (CUDA), check the fused kernels, bf16
# parity against the reference at full width, and the benchmark against the reference in the same
# run. Prints a short table last; logs and JSON lines under $OUT (and build-device/results/, which
# persists between calls while the machine stays warm).
#
#   bench/device/run.sh [phase ...]     phases: build addon fixtures kernel parity parity-full bench-ti2v bench-a14b bench-sdpa offload pipeline report, or all
#
# One device call runs at most 600 s: split as in bench/device/README.md, e.g.
#   call 1: bench/device/run.sh build addon fixtures kernel parity report
#           (then, in the session: cp <files_at>/bin/* .device/bin/, see "A fresh machine" below)
#   call 2: bench/device/run.sh bench-a14b bench-ti2v report
#   call 3: bench/device/run.sh bench-sdpa offload report
#   call 4: bench/device/run.sh pipeline report
#   call 5: bench/device/run.sh parity-full report
# Environment: OUT (default build-device/out), PYTHON (python3), WAN_DEVICE (cuda; cpu = dry run at
# the small configs against whatever torch PYTHON has), DIFFUSERS_SRC (a diffusers src/ folder;
# default: unpacked from .device/diffusers.tar.gz), JOBS (build parallelism, default nproc),
# BUILD_TARGETS (default: what the device phases run: wan_bench, wan_run and, with .device/napi, the
# addon wan_video; `all` builds every target, the tests and the tokenizer addon too;
# scripts/simulate-cuda-build.sh builds only the static libraries), WAN_DEVICE_WORK (default
# build-device/), CALL_BUDGET_S (default 570: the seconds this call may take; set it below the
# call's limit_s when the session has less device time left than 600 s), PARITY_FULL_NEED_GB (35 on
# cuda: the scratch space parity-full wants, see phase_parity-full), PARITY_FULL_SHM (/dev/shm).
#
# A device call is cut off at its limit and only what is under $OUT by then comes back, at most 8
# files. So the results are packed into $OUT/results.tar.gz (with summary.md and env.txt beside it)
# after every phase, no phase starts once the budget is spent, every long command runs under
# `timeout` with what is left of it, and `report` keeps REPORT_RESERVE_S (25) for itself.
#
# A fresh machine (the last call's went idle and was given back) has no build-device/. `build` puts
# the binaries it built in $OUT/bin (wan_bench, wan_run, wan_video.node and source.sha256, the
# sources they were built from); the session copies them into .device/bin/, which travels with
# carry [".device"], and a later call whose phases find no build uses those instead of building
# again, when they were built from the same sources and ldd finds every library they need (the
# rpaths point into the machine's pip torch, the same on every machine of the image); else it builds
# what its phases need.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WAN_DEVICE_WORK:-$ROOT/build-device}"
RESULTS="$WORK/results"
OUT="${OUT:-$WORK/out}"
PYTHON="${PYTHON:-python3}"
DEVICE="${WAN_DEVICE:-cuda}"
JOBS="${JOBS:-$(nproc)}"
BIN="$WORK/build/Release"
mkdir -p "$RESULTS" "$OUT"
export PYTHONDONTWRITEBYTECODE=1

CALL_BUDGET_S="${CALL_BUDGET_S:-570}"
REPORT_RESERVE_S="${REPORT_RESERVE_S:-25}"

# fd 3 is this script's own output: log lines never land in a phase's piped JSON or its log files.
exec 3>&1
log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&3; }
fail() { log "FAILED: $*"; finish; exit 1; }
# The results so far into $OUT: one archive (the device tool brings back at most 8 files), and the
# table and the environment beside it; $OUT/bin (the binaries of `build`) is left as it is.
finish() {
  tar -czf "$OUT/results.tar.gz.part" -C "$RESULTS" . 2>/dev/null && mv -f "$OUT/results.tar.gz.part" "$OUT/results.tar.gz"
  local f
  for f in summary.md env.txt; do [[ -f "$RESULTS/$f" ]] && cp -f "$RESULTS/$f" "$OUT/"; done
  return 0
}

# Seconds of the call budget left for the phases (report's reserve kept back).
seconds_left() { echo $((CALL_BUDGET_S - REPORT_RESERVE_S - SECONDS)); }
# Runs a command under what is left of the budget: 124 (and a log line) when it ran out.
bounded() {
  local left; left=$(seconds_left)
  if ((left <= 0)); then log "out of call time: not started: ${1##*/}"; return 124; fi
  timeout --kill-after=10 "$left" "$@"
  local rc=$?
  ((rc == 124 || rc == 137)) && log "out of call time: stopped after ${left} s: ${1##*/}"
  return $rc
}

# ---- environment: libtorch prefix from the python torch, diffusers source, our python modules
if TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"; then
  export CMAKE_PREFIX_PATH="$TORCH_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
else
  log "no torch in $PYTHON: CMake falls back to its own search; the python phases will fail"
fi
if [[ -z "${DIFFUSERS_SRC:-}" ]]; then
  DIFFUSERS_SRC="$WORK/ref/src"
  if [[ ! -d "$DIFFUSERS_SRC/diffusers" && -f "$ROOT/.device/diffusers.tar.gz" ]]; then
    mkdir -p "$WORK/ref" && tar -xzf "$ROOT/.device/diffusers.tar.gz" -C "$WORK/ref"
  fi
fi
export PYTHONPATH="$DIFFUSERS_SRC:$ROOT/bench/device${PYTHONPATH:+:$PYTHONPATH}"

FUSED_OFF_HERE=""  # set when this script (not the caller) turned the fused kernels off
if [[ -f "$RESULTS/fused_kernels_off" ]]; then
  log "an earlier kernel check failed: WAN_FUSED_KERNELS=0 (the reference formulas)"
  export WAN_FUSED_KERNELS=0 FUSED_OFF_HERE=1
fi

if [[ "$DEVICE" == cpu ]]; then
  MODELS_PARITY=(--models small --umt5 small --device cpu --dtype float32 --vae small --vae-size 128x128x9)
  DTYPE=float32
else
  MODELS_PARITY=(--models a14b,ti2v5b --umt5 xxl --device cuda --dtype bfloat16 --layers 2)
  DTYPE=bfloat16
fi

# The CUDA toolkit: /usr/local/cuda when it has nvcc, else the folder above nvcc's real path. Sets
# NVCC_REAL (empty without one) and exports CUDAToolkit_ROOT and CUDA_HOME.
find_toolkit() {
  NVCC_REAL=""
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then NVCC_REAL=/usr/local/cuda/bin/nvcc
  elif command -v nvcc >/dev/null; then NVCC_REAL="$(readlink -f "$(command -v nvcc)")"; fi
  [[ -n "$NVCC_REAL" ]] || return 0
  local toolkit; toolkit="$(dirname "$(dirname "$NVCC_REAL")")"
  export CUDAToolkit_ROOT="${CUDAToolkit_ROOT:-$toolkit}" CUDA_HOME="${CUDA_HOME:-$toolkit}"
}

# torch's cmake links CUDA::cublas, cufft, ... from the toolkit; where the toolkit lacks one (a
# compiler-only install), link the copy in the pip torch's nvidia/ wheels. Those ship only versioned
# files (libnvrtc.so.13): CMake turns such a path into "-lnvrtc", which finds nothing (seen in a
# simulated CUDA build), so link through a folder of our own, $WORK/cuda-libs, with the plain name
# and the versioned one (the executables' run path names that folder: binaries carried to a fresh
# machine need it made again, see use_carried_bins). Prints the names linked there.
cuda_lib_links() {
  local nvidia; nvidia="$("$PYTHON" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null)/nvidia"
  local links="$WORK/cuda-libs" lib found
  rm -rf "$links" && mkdir -p "$links"
  for lib in cublas cublasLt curand cufft cusparse cusolver nvrtc nvJitLink cupti cufile; do
    compgen -G "${CUDAToolkit_ROOT:-/nonexistent}/lib64/lib$lib.so*" >/dev/null && continue
    found="$(find "$nvidia" -name "lib$lib.so.*" 2>/dev/null | sort | head -1)"
    [[ -n "$found" ]] || continue
    ln -sf "$found" "$links/lib$lib.so" && ln -sf "$found" "$links/$(basename "$found")" && echo "$lib"
  done
}

# The binaries the device phases run, as CMake targets and as files in $BIN.
DEVICE_BINS=(wan_bench wan_run wan_video.node)
target_of() { echo "${1%.node}"; }
# What a phase needs from the build (build and report: nothing).
needs_of() {
  case "$1" in
    addon|fixtures) echo wan_video.node ;;
    kernel|parity|parity-full) echo wan_run ;;
    bench-ti2v|bench-a14b|bench-sdpa|offload|pipeline) echo wan_bench ;;
  esac
}

# What the binaries were built from: the native sources and build files, the torch they link and
# the device kind. Binaries carried from another call are used only when this matches.
source_id() {
  {
    (cd "$ROOT" && find native cmake CMakeLists.txt -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum)
    "$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null
    echo "$DEVICE"
  } | sha256sum | cut -c1-32
}

# After a build: the device binaries it left in $BIN, into $OUT/bin with the sources' id (copy them
# into .device/bin/ for the next calls).
export_bins() {
  local f n=0
  rm -rf "$OUT/bin"
  for f in "${DEVICE_BINS[@]}"; do
    [[ -f "$BIN/$f" ]] && mkdir -p "$OUT/bin" && cp -f "$BIN/$f" "$OUT/bin/$f" && n=$((n + 1))
  done
  ((n)) || return 0
  source_id >"$OUT/bin/source.sha256"
  log "build: $n binaries in \$OUT/bin ($(cd "$OUT/bin" && echo *)): copy them into .device/bin/ so that a call on a fresh machine need not build"
}

# A call on a fresh machine: the binaries carried in .device/bin (from an earlier call's $OUT/bin)
# that this call needs ($@), into $BIN, when they were built from these sources and every library
# they link resolves here. Returns 1 when something needed is still missing (then: build it).
use_carried_bins() {
  local carried="$ROOT/.device/bin" f missing=()
  for f in "$@"; do [[ -x "$BIN/$f" ]] || missing+=("$f"); done
  ((${#missing[@]})) || return 0
  [[ -d "$carried" ]] || return 1
  local id; id="$(source_id)"
  if [[ "$(cat "$carried/source.sha256" 2>/dev/null)" != "$id" ]]; then
    log "carried binaries: .device/bin was built from other sources (or another torch): not used"
    return 1
  fi
  if [[ "$DEVICE" != cpu ]]; then  # the build's cuda-libs/ links, made the same way (their run path)
    find_toolkit
    [[ -n "$NVCC_REAL" ]] && cuda_lib_links >/dev/null
  fi
  mkdir -p "$BIN"
  local still=()
  for f in "${missing[@]}"; do
    if [[ ! -f "$carried/$f" ]]; then still+=("$f"); continue; fi
    cp -f "$carried/$f" "$BIN/$f" && chmod 755 "$BIN/$f"  # the files from files_at are read-only
    local unresolved; unresolved="$(ldd "$BIN/$f" 2>&1 | grep -E "not found|not a dynamic" || true)"
    if [[ -n "$unresolved" ]]; then
      log "carried binaries: $f: $(echo "$unresolved" | tr -s ' \t\n' ' ')- not used"
      rm -f "$BIN/$f"
      still+=("$f")
    else
      log "carried binaries: using .device/bin/$f (ldd: every library found)"
    fi
  done
  ((${#still[@]} == 0))
}

phase_build() {
  local napi=() addon=OFF
  if [[ -d "$ROOT/.device/napi/node-api-headers/include" ]]; then
    addon=ON
    napi=(-DNODE_API_HEADERS_DIR="$ROOT/.device/napi/node-api-headers/include" -DNODE_ADDON_API_DIR="$ROOT/.device/napi/node-addon-api")
  fi
  local gen=() cuda=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  if [[ "$DEVICE" != cpu ]]; then
    # Hopper only here (one arch builds fastest); CMakeLists.txt defaults to 80;89;90.
    cuda=(-DCMAKE_CUDA_ARCHITECTURES=90-real -DTORCH_CUDA_ARCH_LIST=9.0)
    find_toolkit
    if [[ -n "$NVCC_REAL" ]]; then
      cuda+=(-DCMAKE_CUDA_COMPILER="$NVCC_REAL" -DCUDA_TOOLKIT_ROOT_DIR="$CUDAToolkit_ROOT")
      local lib
      for lib in $(cuda_lib_links); do
        cuda+=(-DCUDA_${lib}_LIBRARY="$WORK/cuda-libs/lib$lib.so") && log "using $(readlink "$WORK/cuda-libs/lib$lib.so") for CUDA::$lib"
      done
    fi
  fi
  log "configure (addon $addon) -> $RESULTS/build.log"
  bounded cmake -S "$ROOT" -B "$WORK/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DWAN_BUILD_ADDON=$addon "${napi[@]}" "${cuda[@]}" \
    >"$RESULTS/build.log" 2>&1 || { tail -40 "$RESULTS/build.log"; fail "cmake configure"; }
  grep -E "wan-video:" "$RESULTS/build.log"
  if [[ "$DEVICE" != cpu ]] && ! grep -q "CUDA path ON" "$RESULTS/build.log"; then
    tail -20 "$RESULTS/build.log"; fail "libtorch without CUDA (is the pip torch a +cu build?)"
  fi
  # Only what the device phases run (the tests and the tokenizer addon cost minutes of a 600 s
  # call and no phase runs them); BUILD_TARGETS=all builds everything.
  local targets=() wanted="${BUILD_TARGETS:-wan_bench wan_run}"
  [[ -z "${BUILD_TARGETS:-}" && $addon == ON ]] && wanted+=" wan_video"
  [[ "$wanted" != all ]] && targets=(--target $wanted)
  log "build -j$JOBS (${wanted})"
  # No stale addon from an earlier build may stand in for one that failed now (relinking is cheap).
  rm -f "$BIN/wan_video.node"
  # Keep going past a failed target: an addon that does not compile must not cost the benchmarks
  # and parity, which need only wan_bench and wan_run.
  local keep_going=(-k)
  [[ ${#gen[@]} -gt 0 ]] && keep_going=(-k 0)
  if ! bounded cmake --build "$WORK/build" -j "$JOBS" "${targets[@]}" -- "${keep_going[@]}" >>"$RESULTS/build.log" 2>&1; then
    grep -E "error" "$RESULTS/build.log" | head -30
    # Only the device binaries were asked for: the tools asked for again on their own (a no-op when
    # they are up to date, else their own error); a failed addon then only costs the phases that
    # load it. Other targets (scripts/simulate-cuda-build.sh's) must all build.
    local t tools=() others=()
    for t in $wanted; do
      case "$t" in all|wan_bench|wan_run) tools+=("$t") ;; wan_video) ;; *) others+=("$t") ;; esac
    done
    [[ " ${tools[*]} " == *" all "* ]] && tools=(wan_bench wan_run)
    ((${#others[@]} == 0)) || fail "build"
    if ((${#tools[@]})); then
      bounded cmake --build "$WORK/build" -j "$JOBS" --target "${tools[@]}" >>"$RESULTS/build.log" 2>&1 || fail "build"
    fi
    log "build: some targets FAILED (build.log); ${tools[*]:-no tool was asked for} built, the phases that need the rest say so"
  fi
  ls -la "$BIN" | grep -E "wan_(bench|run)|\.node" || true
  export_bins
}

# The addon built against the CUDA libtorch, loaded by the carried node: runtimeInfo() must see CUDA.
# The carried node binary (the device has no Node.js), unpacked once into $WORK/bin.
ensure_node() {
  [[ -x "$WORK/bin/node" ]] && return 0
  [[ -f "$ROOT/.device/node.xz" ]] || { log "no .device/node.xz (scripts/prepare-device.sh)"; return 1; }
  mkdir -p "$WORK/bin" && xz -dc "$ROOT/.device/node.xz" >"$WORK/bin/node" && chmod +x "$WORK/bin/node"
}

phase_addon() {
  if [[ ! -f "$BIN/wan_video.node" ]]; then
    if [[ -d "$ROOT/.device/napi" ]]; then log "addon: FAILED to build (build.log)"; else log "addon: not built (needs .device/napi from scripts/prepare-device.sh)"; fi
    return 1
  fi
  ensure_node || return
  log "addon: runtimeInfo() -> addon.json"
  "$WORK/bin/node" -e "console.log(JSON.stringify(require(process.argv[1]).runtimeInfo()))" "$BIN/wan_video.node" \
    | tee "$RESULTS/addon.json"
  # Not the end of the call: the phases after it that need no addon still run.
  if [[ ${PIPESTATUS[0]} -ne 0 ]]; then log "addon: FAILED to load"; return 1; fi
  if [[ "$DEVICE" != cpu ]] && ! grep -q '"cudaAvailable":true' "$RESULTS/addon.json"; then
    log "addon: FAILED: it does not see CUDA: $(grep -o '"cudaUnavailableReason":"[^"]*"' "$RESULTS/addon.json" | cut -d'"' -f4)"
    return 1
  fi
}

# The golden fixtures through the addon on the device (lib/parity.ts, as `wan-video parity --device`):
# every component and the whole pipelines in float32 with TF32 off, in each offload mode, against
# the reference outputs under the manifests' tolerances. Seconds: the models are tiny.
phase_fixtures() {
  if [[ ! -f "$BIN/wan_video.node" ]]; then log "fixtures: no addon"; return; fi
  local dist="$ROOT/.device/dist"
  [[ -f "$dist/lib/parity.js" ]] || dist="$ROOT/dist"
  [[ -f "$dist/lib/parity.js" ]] || { log "fixtures: no built lib (scripts/prepare-device.sh puts it in .device/dist)"; return; }
  ensure_node || return
  log "fixtures ($DEVICE, float32, offload none,model,sequential) -> fixtures.jsonl"
  WAN_VIDEO_ADDON="$BIN/wan_video.node" bounded "$WORK/bin/node" "$ROOT/bench/device/fixture_parity.mjs" "$dist" "$ROOT/test/fixtures/wan-tiny" \
    "$DEVICE" none,model,sequential "$RESULTS/fixtures.jsonl" >"$RESULTS/fixtures.log" 2>&1
  local rc=$?
  grep -E "^parity|^FAIL" "$RESULTS/fixtures.log" | head -40
  [[ $rc -eq 0 ]] || log "fixtures: FAIL (see fixtures.log)"
}

# A failed check does not end the call: the phases after it (and later calls, through the marker
# file) run with WAN_FUSED_KERNELS=0, the reference formulas, so parity and timings stay meaningful.
phase_kernel() {
  if [[ "$DEVICE" == cpu ]]; then log "kernel: skipped on the CPU"; return; fi
  log "kernel check -> kernel.jsonl"
  bounded "$BIN/wan_run" kernel-check --device cuda | tee -a "$RESULTS/kernel.jsonl"
  if [[ ${PIPESTATUS[0]} -eq 0 ]]; then
    rm -f "$RESULTS/fused_kernels_off"
    [[ -n "$FUSED_OFF_HERE" ]] && unset WAN_FUSED_KERNELS && FUSED_OFF_HERE=""
  else
    log "kernel check FAILED: the fused kernels are off from here on (WAN_FUSED_KERNELS=0)"
    touch "$RESULTS/fused_kernels_off"
    export WAN_FUSED_KERNELS=0 FUSED_OFF_HERE=1
  fi
}

phase_parity() {
  log "parity (${MODELS_PARITY[*]}) -> parity.jsonl"
  bounded "$PYTHON" "$ROOT/bench/device/parity.py" --tool "$BIN/wan_run" --out "$RESULTS" --work "$WORK/parity-work" "${MODELS_PARITY[@]}" \
    2>>"$RESULTS/parity.stderr.log" | tee -a "$RESULTS/parity.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || log "parity: FAIL (see parity.stderr.log)"
}

# Parity at full depth (the issue's "full A14B-expert and TI2V-5B configs"): 40 A14B blocks at
# 832x480x81 (a 28.6 GB bf16 checkpoint; the float32 reference alone needs 57 GB of weights), 30
# TI2V-5B blocks at 1280x704x121, all 24 umt5-xxl layers. Each side loads the saved checkpoint, so
# the rows also carry our load time. Its own device call (~6-8 min); `parity` (2 blocks) comes first.
#
# Scratch space: the checkpoints are written to disk and read by both sides, one at a time (each is
# deleted after its comparison): 28.6 GB for the A14B expert, ~10 GB for TI2V-5B, ~11 GB for
# umt5-xxl. Where the work dir has less than PARITY_FULL_NEED_GB (35) free, the checkpoints go to
# PARITY_FULL_SHM (/dev/shm: host memory, 128 GiB on the device) when it has that much room and the
# host keeps enough memory beside it for the reference's copy of the weights (twice the need); else
# fewer layers, as many as the free space holds. The choice is logged and kept in parity-full.txt.
free_gb() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print int($4 / 1048576) }'; }
mem_available_gb() { awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo 2>/dev/null; }
# Blocks that fit: layers_for FREE_GB BASE_GB GB_PER_LAYER MAX (at least 1, at most MAX).
layers_for() { awk -v free="$1" -v base="$2" -v per="$3" -v max="$4" 'BEGIN { n = int((free - base) / per); if (n > max) n = max; if (n < 1) n = 1; print n }'; }

phase_parity-full() {
  local need="${PARITY_FULL_NEED_GB:-35}" shm="${PARITY_FULL_SHM:-/dev/shm}" pwork="$WORK/parity-work" choice
  [[ "$DEVICE" == cpu ]] && need="${PARITY_FULL_NEED_GB:-1}"
  mkdir -p "$pwork"
  local here; here="$(free_gb "$pwork")"; here=${here:-0}
  local shm_free; shm_free="$(free_gb "$shm")"; shm_free=${shm_free:-0}
  local mem; mem="$(mem_available_gb)"; mem=${mem:-0}
  # What /dev/shm can take: its free space, and no more than half the host memory available (the
  # reference reads the checkpoint into host memory beside it).
  local shm_fit=$((shm_free < mem / 2 ? shm_free : mem / 2))
  [[ -d "$shm" && -w "$shm" ]] || shm_fit=0
  local avail=$here
  if ((here >= need)); then
    choice="work dir $pwork: $here GB free (need $need)"
  elif ((shm_fit >= need)); then
    pwork="$shm/wan-parity-work" avail=$shm_fit
    choice="$shm ($shm_free GB free, $mem GB of host memory available): the work dir has $here GB free (need $need)"
  else
    ((shm_fit > here)) && pwork="$shm/wan-parity-work" avail=$shm_fit
    choice="fewer layers in $pwork ($avail GB usable; work dir $here GB free, $shm $shm_free GB, host memory $mem GB; need $need)"
  fi
  rm -rf "$pwork" && mkdir -p "$pwork"
  local runs=() common=(--tool "$BIN/wan_run" --out "$RESULTS" --work "$pwork" --vae none)
  if [[ "$DEVICE" == cpu ]]; then
    common+=(--device cpu --dtype float32)
    local layers=2
    ((avail < need)) && layers=$(layers_for "$avail" 0 0.001 2)
    runs=("--models small --layers $layers --umt5 small --text-layers $layers")
  else
    common+=(--device cuda --dtype bfloat16)
    # GB: A14B block 0.715 (+1 for the rest and the inputs), TI2V-5B block 0.33 (+1), umt5-xxl layer
    # 0.39 (+2.2: the 256k-token embedding); each run's checkpoint is deleted before the next is written.
    local a14b=40 ti2v=30 text=24
    if ((avail < need)); then
      a14b=$(layers_for "$avail" 3 0.715 40) ti2v=$(layers_for "$avail" 3 0.33 30) text=$(layers_for "$avail" 4 0.39 24)
    fi
    runs=("--models a14b --layers $a14b --size 832x480x81 --umt5 none" "--models ti2v5b --layers $ti2v --umt5 xxl --text-layers $text")
  fi
  log "parity-full scratch: $choice"
  { echo "scratch: $choice"; printf 'run: %s\n' "${runs[@]}"; } >"$RESULTS/parity-full.txt"
  local r
  for r in "${runs[@]}"; do
    log "parity-full ($r) -> parity.jsonl"
    # shellcheck disable=SC2086  # $r is a list of options
    bounded "$PYTHON" "$ROOT/bench/device/parity.py" "${common[@]}" $r 2>>"$RESULTS/parity.stderr.log" | tee -a "$RESULTS/parity.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || log "parity-full: FAIL ($r; see parity.stderr.log)"
  done
  [[ "$pwork" == "$shm/"* ]] && rm -rf "$pwork"  # host memory back
  return 0
}

# ours then the reference, one model and size: bench_pair MODEL WxHxF WARMUP ITERS [novae]
# Both sides time one float32 VAE decode after warming up on the first 2 latent frames; `novae`
# leaves the decode out on both (a size whose VAE another pair already times).
bench_pair() {
  local model=$1 size=$2 warmup=$3 iters=$4 ours_vae=() ref_vae=(--vae)
  [[ "${5:-}" == novae ]] && ours_vae=(--skip vae) ref_vae=()
  local w=${size%%x*} rest=${size#*x}; local h=${rest%%x*} f=${rest#*x}
  log "ours: $model $size${5:+ ($5)} -> ours.jsonl"
  bounded "$BIN/wan_bench" --model "$model" --device "$DEVICE" --dtype "$DTYPE" --width "$w" --height "$h" --frames "$f" "${ours_vae[@]}" \
    --warmup "$warmup" --iters "$iters" --json 2>>"$RESULTS/bench.stderr.log" | tee -a "$RESULTS/ours.jsonl" || log "ours: FAILED ($model $size)"
  log "reference: $model $size${5:+ ($5)} -> reference.jsonl"
  bounded "$PYTHON" "$ROOT/bench/device/reference_bench.py" --model "$model" --device "$DEVICE" --dtype "$DTYPE" --size "$size" "${ref_vae[@]}" \
    --warmup "$warmup" --iters "$iters" --out "$RESULTS/reference.jsonl" 2>>"$RESULTS/bench.stderr.log" >/dev/null \
    || log "reference: FAILED ($model $size, see bench.stderr.log)"
}

phase_bench-ti2v() {
  if [[ "$DEVICE" == cpu ]]; then bench_pair small 128x128x9 1 1; return; fi
  bench_pair ti2v5b 1280x704x121 1 2
}

phase_bench-a14b() {
  if [[ "$DEVICE" == cpu ]]; then bench_pair small 64x64x9 1 1 novae; return; fi  # the dry run of the 480p pair
  # 720p first: the issue's DiT-step target. ~25 s per CFG step: one warm-up step, one timed.
  bench_pair a14b 1280x720x81 1 1
  # The same Wan2.1 VAE as at 720p: its decode is timed there.
  bench_pair a14b 832x480x81 1 2 novae
}

# The DiT step with the weights in host memory ('model': a whole-expert upload per call; 'sequential':
# blocks streamed with prefetch), its peak, and a bit-for-bit check against the resident output.
phase_offload() {
  local model=a14b size=(--width 832 --height 480 --frames 81)
  [[ "$DEVICE" == cpu ]] && model=small size=()
  local mode
  for mode in model sequential; do
    log "offload $mode: $model -> offload.jsonl"
    # One warm-up: else the resident step, the process's first CUDA forward, pays the handle and
    # plan setup that the offloaded step after it does not, and offloading looks cheaper than it is.
    bounded "$BIN/wan_bench" --model "$model" --device "$DEVICE" --dtype "$DTYPE" "${size[@]}" --skip text,vae,rates --warmup 1 --iters 1 \
      --offload "$mode" --json 2>>"$RESULTS/bench.stderr.log" | tee -a "$RESULTS/offload.jsonl" || log "offload $mode: FAILED"
  done
}

# The DiT step with the SDPA backends in another order than libtorch's default (flash first): the
# rates phase of bench-a14b times each backend alone at the DiT shape; this times the whole step.
# SDPA_ORDER (default cudnn,flash) is what to try.
phase_bench-sdpa() {
  local order="${SDPA_ORDER:-}" model=a14b size=(--width 1280 --height 720 --frames 81)
  [[ "$DEVICE" == cpu ]] && model=small size=() order="${SDPA_ORDER:-math}"
  if [[ -z "$order" ]]; then
    # The other of cuDNN and flash than the default run's (bench-a14b) first: a CUDA libtorch >= 2.10
    # with cuDNN > 9.15 puts cuDNN first on sm90/sm100 itself (sdpa_priority in its JSON line).
    local first
    first="$("$PYTHON" -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rows = [r for r in rows if r.get("model") == "a14b" and r.get("width") == 1280 and r.get("sdpa_order") == "default"]
print(rows[-1].get("sdpa_priority", "").split(",")[0] if rows else "")' "$RESULTS/ours.jsonl" 2>/dev/null)"
    if [[ "$first" == cudnn_attention ]]; then order=flash,cudnn; else order=cudnn,flash; fi
    log "bench-sdpa: the default run tried ${first:-(no bench-a14b row)} first"
  fi
  log "ours with --sdpa-order $order: $model -> ours.jsonl"
  bounded "$BIN/wan_bench" --model "$model" --device "$DEVICE" --dtype "$DTYPE" "${size[@]}" --skip text,vae,rates --warmup 1 --iters 1 \
    --sdpa-order "$order" --json 2>>"$RESULTS/bench.stderr.log" | tee -a "$RESULTS/ours.jsonl" || log "bench-sdpa: FAILED"
}

# Whole generations through WanPipeline with random weights at the real sizes (wan_bench --pipeline,
# 3 steps with CFG, then the decode): the peaks the issue's targets name, as the pipeline really
# runs. A14B 720p with offload 'none' (both experts resident) and 'model'; TI2V-5B 720p with 'model'
# and tiled decode. The index files come from the tiny fixtures of each family.
phase_pipeline() {
  local fixtures="$ROOT/test/fixtures/wan-tiny" runs=() r
  if [[ "$DEVICE" == cpu ]]; then
    runs=("--model small --index $fixtures/t2v-a14b-tiny --offload none" "--model small --index $fixtures/t2v-a14b-tiny --offload model")
  else
    runs=("--model a14b --index $fixtures/t2v-a14b-tiny --width 1280 --height 720 --frames 81 --offload none"
          "--model a14b --index $fixtures/t2v-a14b-tiny --width 1280 --height 720 --frames 81 --offload model"
          "--model ti2v5b --index $fixtures/ti2v-5b-tiny --width 1280 --height 704 --frames 121 --offload model --tiled-decode")
  fi
  for r in "${runs[@]}"; do
    log "pipeline ($r) -> pipeline.jsonl"
    # shellcheck disable=SC2086  # $r is a list of options
    # 3 steps: with the fixtures' shift 3 the timesteps are 999 (high-noise expert), 857 and 600 (low,
    # under boundary 875): the swap falls in step 2, so the step-time minimum (over steps 2 and 3) is
    # a plain step, not the one that swaps experts under 'model'.
    bounded "$BIN/wan_bench" --pipeline $r --device "$DEVICE" --dtype "$DTYPE" --pipeline-steps 3 --json 2>>"$RESULTS/bench.stderr.log" \
      | tee -a "$RESULTS/pipeline.jsonl" || log "pipeline: FAILED ($r)"
  done
}

phase_report() {
  {
    echo "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader
    # parity-full writes up to ~29 GB of checkpoints (phase_parity-full says where it puts them)
    df -h "$WORK" /dev/shm 2>&1
    echo "host memory: $(mem_available_gb) GB available"
  } >"$RESULTS/env.txt"
  cat "$RESULTS/env.txt"
  "$PYTHON" "$ROOT/bench/device/report.py" "$RESULTS"
}

phases=("$@")
[[ ${#phases[@]} -eq 0 || "${phases[0]}" == all ]] && phases=(build addon fixtures kernel parity parity-full bench-ti2v bench-a14b bench-sdpa offload pipeline report)
# A call that lands on a fresh machine (the last one went idle and was given back) has no build: use
# the binaries an earlier call built (carried in .device/bin) where they fit this machine, else
# build what this call's phases need first instead of failing every phase.
if [[ " ${phases[*]} " != *" build "* ]]; then
  needed=()
  for p in "${phases[@]}"; do
    for f in $(needs_of "$p"); do
      # No addon without the Node-API headers (phase_addon says so); asking for it would fail the build.
      [[ "$f" == wan_video.node && ! -d "$ROOT/.device/napi/node-api-headers/include" ]] && continue
      [[ " ${needed[*]} " == *" $f "* ]] || needed+=("$f")
    done
  done
  if ((${#needed[@]})) && ! use_carried_bins "${needed[@]}"; then
    missing=()
    for f in "${needed[@]}"; do [[ -x "$BIN/$f" ]] || missing+=("$(target_of "$f")"); done
    log "no ${missing[*]} in $WORK (a fresh machine?): building first"
    phases=(build "${phases[@]}")
    # Only what this call's phases need: the addon and the tests cost minutes of a 600 s call.
    export BUILD_TARGETS="${BUILD_TARGETS:-${missing[*]}}"
  fi
fi
for p in "${phases[@]}"; do
  declare -F "phase_$p" >/dev/null || fail "unknown phase '$p' (build addon fixtures kernel parity parity-full bench-ti2v bench-a14b bench-sdpa offload pipeline report all)"
  if [[ "$p" != report ]] && (($(seconds_left) <= 0)); then
    log "out of call time (CALL_BUDGET_S=$CALL_BUDGET_S): phase $p skipped"
    continue
  fi
  start=$SECONDS
  "phase_$p"
  log "$p took $((SECONDS - start)) s"
  finish
done
