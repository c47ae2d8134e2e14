#!/usr/bin/env bash
# Builds the safetensors header fuzzer (no libtorch: seconds) and runs it for a bounded time.
# Usage: test/fuzz/run.sh [seconds]   (default 30). New crashing inputs land in test/fuzz/crashes/,
# where test/fuzz.test.ts replays them through readSafetensors as regression inputs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-30}"
out="${WAN_FUZZ_BUILD:-$root/build-fuzz}"
mkdir -p "$out" "$here/crashes"
CXX="${CXX_FUZZ:-clang++}"
bin="$out/safetensors_fuzzer"
"$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/native" \
  "$here/safetensors_fuzzer.cpp" "$root/native/core/errors.cpp" "$root/native/core/file_read.cpp" "$root/native/core/json.cpp" "$root/native/core/safetensors.cpp" \
  -o "$bin"
# The corpus in the tree stays as committed; the run's new inputs go to a scratch folder.
work="$out/corpus"
mkdir -p "$work"
# -rss_limit_mb: the parser must not need much memory for a small input.
# A crash writes crash-<sha1> into crashes/ and makes the run fail.
exec "$bin" -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=4096 -timeout=10 \
  -dict="$here/dict.txt" -artifact_prefix="$here/crashes/" -print_final_stats=1 "$work" "$here/corpus"
