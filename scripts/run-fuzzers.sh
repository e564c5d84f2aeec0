#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECS seconds each, from its seed corpus
# (tests/fuzz/corpus/<name>/). A crash, leak or sanitizer report exits non-zero.
set -euo pipefail
build=${1:?build dir}; secs=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
found=0
for bin in "$build"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  found=$((found + 1))
  seeds="$root/tests/fuzz/corpus/$name"
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "fuzz: $name for ${secs}s from $(ls "$work" | wc -l) seeds"
  mkdir -p "$root/fuzz-artifacts"
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
         -artifact_prefix="$root/fuzz-artifacts/$name-" "$work" 2>&1 | tail -n 12
  rm -rf "$work"
done
[ "$found" -gt 0 ] || { echo "fuzz: no fuzz targets built in $build" >&2; exit 1; }
echo "fuzz: $found targets ran clean"
