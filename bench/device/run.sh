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
#   call 2: bench/device/run.sh bench-a14b bench-ti2v report
#   call 3: bench/device/run.sh bench-sdpa offload report
#   call 4: bench/device/run.sh pipeline report
#   call 5: bench/device/run.sh parity-full report
# Environment: OUT (default build-device/out), PYTHON (python3), WAN_DEVICE (cuda; cpu = dry run at
# the small configs against whatever torch PYTHON has), DIFFUSERS_SRC (a diffusers src/ folder;
# default: unpacked from .device/diffusers.tar.gz), JOBS (build parallelism, default nproc),
# BUILD_TARGETS (default: all; scripts/simulate-cuda-build.sh builds only the static libraries),
# WAN_DEVICE_WORK (default build-device/), CALL_BUDGET_S (default 570: the seconds this call may
# take; set it below the call's limit_s when the session has less device time left than 600 s).
#
# A device call is cut off at its limit and only what is under $OUT by then comes back. So results
# are copied to $OUT after every phase, no phase starts once the budget is spent, every long command
# runs under `timeout` with what is left of it, and `report` keeps REPORT_RESERVE_S (25) for itself.
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
finish() { cp -r "$RESULTS"/. "$OUT"/ 2>/dev/null || true; }

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
    # The toolkit: /usr/local/cuda when it has nvcc, else the folder above nvcc's real path.
    local nvcc_real=""
    if [[ -x /usr/local/cuda/bin/nvcc ]]; then nvcc_real=/usr/local/cuda/bin/nvcc
    elif command -v nvcc >/dev/null; then nvcc_real="$(readlink -f "$(command -v nvcc)")"; fi
    if [[ -n "$nvcc_real" ]]; then
      local toolkit; toolkit="$(dirname "$(dirname "$nvcc_real")")"
      export CUDAToolkit_ROOT="${CUDAToolkit_ROOT:-$toolkit}" CUDA_HOME="${CUDA_HOME:-$toolkit}"
      cuda+=(-DCMAKE_CUDA_COMPILER="$nvcc_real" -DCUDA_TOOLKIT_ROOT_DIR="$CUDAToolkit_ROOT")
      # torch's cmake links CUDA::cublas, cufft, ... from the toolkit; where the toolkit lacks one
      # (a compiler-only install), point it at the copy in the pip torch's nvidia/ wheels. Those
      # ship only versioned files (libnvrtc.so.13): CMake turns such a path into "-lnvrtc", which
      # finds nothing (seen in a simulated CUDA build), so link through a folder of our own with
      # the plain name and the versioned one (the executables' run path names that folder).
      local nvidia; nvidia="$("$PYTHON" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null)/nvidia"
      local links="$WORK/cuda-libs" lib found
      rm -rf "$links" && mkdir -p "$links"
      for lib in cublas cublasLt curand cufft cusparse cusolver nvrtc nvJitLink cupti cufile; do
        compgen -G "$CUDAToolkit_ROOT/lib64/lib$lib.so*" >/dev/null && continue
        found="$(find "$nvidia" -name "lib$lib.so.*" 2>/dev/null | sort | head -1)"
        [[ -n "$found" ]] || continue
        ln -sf "$found" "$links/lib$lib.so" && ln -sf "$found" "$links/$(basename "$found")"
        cuda+=(-DCUDA_${lib}_LIBRARY="$links/lib$lib.so") && log "using $found for CUDA::$lib"
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
  log "build -j$JOBS"
  local targets=()
  [[ -n "${BUILD_TARGETS:-}" ]] && targets=(--target $BUILD_TARGETS)
  # No stale addon from an earlier build may stand in for one that failed now (relinking is cheap).
  rm -f "$BIN/wan_video.node"
  # Keep going past a failed target: an addon that does not compile must not cost the benchmarks
  # and parity, which need only wan_bench and wan_run.
  local keep_going=(-k)
  [[ ${#gen[@]} -gt 0 ]] && keep_going=(-k 0)
  if ! bounded cmake --build "$WORK/build" -j "$JOBS" "${targets[@]}" -- "${keep_going[@]}" >>"$RESULTS/build.log" 2>&1; then
    grep -E "error" "$RESULTS/build.log" | head -30
    # The tools again on their own: a no-op when they are up to date, else their own error.
    [[ -z "${BUILD_TARGETS:-}" ]] && bounded cmake --build "$WORK/build" -j "$JOBS" --target wan_bench wan_run >>"$RESULTS/build.log" 2>&1 || fail "build"
    log "build: some targets FAILED (build.log); wan_bench and wan_run are built, the phases that need the rest say so"
  fi
  ls -la "$BIN" | grep -E "wan_(bench|run)|\.node" || true
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
  if [[ "$DEVICE" != cpu ]] && ! grep -q '"cudaAvailable":true' "$RESULTS/addon.json"; then log "addon: FAILED: it does not see CUDA"; return 1; fi
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
phase_parity-full() {
  local runs=() common=(--tool "$BIN/wan_run" --out "$RESULTS" --work "$WORK/parity-work" --vae none)
  if [[ "$DEVICE" == cpu ]]; then
    common+=(--device cpu --dtype float32)
    runs=("--models small --layers 2 --umt5 small --text-layers 2")
  else
    common+=(--device cuda --dtype bfloat16)
    runs=("--models a14b --layers 40 --size 832x480x81 --umt5 none" "--models ti2v5b --layers 30 --umt5 xxl --text-layers 24")
  fi
  local r
  for r in "${runs[@]}"; do
    log "parity-full ($r) -> parity.jsonl"
    # shellcheck disable=SC2086  # $r is a list of options
    bounded "$PYTHON" "$ROOT/bench/device/parity.py" "${common[@]}" $r 2>>"$RESULTS/parity.stderr.log" | tee -a "$RESULTS/parity.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || log "parity-full: FAIL ($r; see parity.stderr.log)"
  done
}

# ours then the reference, one model and size: bench_pair MODEL WxHxF WARMUP ITERS
bench_pair() {
  local model=$1 size=$2 warmup=$3 iters=$4
  local w=${size%%x*} rest=${size#*x}; local h=${rest%%x*} f=${rest#*x}
  log "ours: $model $size -> ours.jsonl"
  bounded "$BIN/wan_bench" --model "$model" --device "$DEVICE" --dtype "$DTYPE" --width "$w" --height "$h" --frames "$f" \
    --warmup "$warmup" --iters "$iters" --json 2>>"$RESULTS/bench.stderr.log" | tee -a "$RESULTS/ours.jsonl" || log "ours: FAILED ($model $size)"
  log "reference: $model $size -> reference.jsonl"
  bounded "$PYTHON" "$ROOT/bench/device/reference_bench.py" --model "$model" --device "$DEVICE" --dtype "$DTYPE" --size "$size" --vae \
    --warmup "$warmup" --iters "$iters" --out "$RESULTS/reference.jsonl" 2>>"$RESULTS/bench.stderr.log" >/dev/null \
    || log "reference: FAILED ($model $size, see bench.stderr.log)"
}

phase_bench-ti2v() {
  if [[ "$DEVICE" == cpu ]]; then bench_pair small 128x128x9 1 1; return; fi
  bench_pair ti2v5b 1280x704x121 1 2
}

phase_bench-a14b() {
  if [[ "$DEVICE" == cpu ]]; then log "bench-a14b: skipped on the CPU"; return; fi
  # 720p first: the issue's DiT-step target. ~25 s per CFG step: one warm-up step, one timed.
  bench_pair a14b 1280x720x81 1 1
  bench_pair a14b 832x480x81 1 2
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
  } >"$RESULTS/env.txt"
  cat "$RESULTS/env.txt"
  "$PYTHON" "$ROOT/bench/device/report.py" "$RESULTS"
}

phases=("$@")
[[ ${#phases[@]} -eq 0 || "${phases[0]}" == all ]] && phases=(build addon fixtures kernel parity parity-full bench-ti2v bench-a14b bench-sdpa offload pipeline report)
# A call that lands on a fresh machine (the last one went idle and was given back) has no build:
# make one first instead of failing every phase.
if [[ " ${phases[*]} " != *" build "* && ! -x "$BIN/wan_bench" ]]; then
  log "no build in $WORK (a fresh machine?): building first"
  phases=(build "${phases[@]}")
  # Only what this call's phases need: the addon and the tests cost minutes of a 600 s call.
  if [[ " ${phases[*]} " != *" addon "* && " ${phases[*]} " != *" fixtures "* ]]; then
    export BUILD_TARGETS="${BUILD_TARGETS:-wan_bench wan_run}"
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
