#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECS seconds each, from its seed corpus
# (tests/fuzz/corpus/<name>/), JOBS targets at a time (default: the number of CPUs).
# A crash, leak, timeout or sanitizer report fails the run, and the input that caused it is
# kept in fuzz-artifacts/.
set -euo pipefail
build=${1:?build dir}; secs=${2:-60}; jobs=${3:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/fuzz-artifacts"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {
  local bin=$1 name work seeds
  name=$(basename "$bin")
  work=$(mktemp -d)
  seeds="$ROOT/tests/fuzz/corpus/$name"
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  if "$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -timeout=30 \
       -print_final_stats=1 -artifact_prefix="$ROOT/fuzz-artifacts/$name-" "$work" \
       > "$LOGS/$name.log" 2>&1; then
    echo "fuzz: $name clean ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$LOGS/$name.log" | awk '{print $2}') runs in ${SECS}s)"
    rm -rf "$work"
  else
    echo "fuzz: $name FAILED"; tail -n 40 "$LOGS/$name.log"; rm -rf "$work"; return 1
  fi
}
export -f run_one
export ROOT="$root" SECS="$secs" LOGS="$logs"

shopt -s nullglob
bins=()
for bin in "$build"/fuzz_*; do [ -x "$bin" ] && bins+=("$bin"); done
[ ${#bins[@]} -gt 0 ] || { echo "fuzz: no fuzz targets built in $build" >&2; exit 1; }
echo "fuzz: ${#bins[@]} targets, ${secs}s each, $jobs at a time"
printf '%s\n' "${bins[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {}
echo "fuzz: ${#bins[@]} targets ran clean"
