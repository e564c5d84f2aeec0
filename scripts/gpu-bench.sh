#!/usr/bin/env bash
# The GPU figures of docs/PERF.md in one go, on a machine with an NVIDIA GPU: builds dflash,
# then `dflash bench --device cuda` on the embedded pair (AR, speculative, verify widths) and
# on a Qwen3.6-27B-shaped Q4_K_M with random weights (`dflash mkmodel`). The roofline figure is
# weight bytes per token / time per token / the device's copy bandwidth, all from the same run.
#   bash scripts/gpu-bench.sh [--no-27b]        (from the repository root; logs in $OUT)
set -euo pipefail
out=${OUT:-$(pwd)/gpu-bench-out}
mkdir -p "$out"
prefix=()
if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then   # the GPU machine lacks the -dev packages
  mkdir -p /opt/deps
  for d in .debs/*.deb; do dpkg -x "$d" /opt/deps; done
  export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  prefix=(-DCMAKE_PREFIX_PATH=/opt/deps/usr)
fi
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DDFLASH_TESTS=OFF \
  "${prefix[@]}" > "$out/build.log" 2>&1
cmake --build build-gpu -j "$(nproc)" --target dflash >> "$out/build.log" 2>&1
D=build-gpu/dflash
prompt='class Stack:
    """A last-in, first-out stack."""

    def __init__(self):
'
echo "== embedded pair, cuda"
"$D" bench --device cuda -P "$prompt" -n 256 --reps 3 --widths --membw-mib 1024 2>"$out/pair.err" | tee "$out/pair.txt"
echo "== embedded pair, cuda, block 8"
"$D" bench --device cuda -P "$prompt" -n 256 --reps 3 --block 8 --membw-mib 256 2>>"$out/pair.err" | tail -4
[ "${1:-}" = "--no-27b" ] && exit 0
echo "== qwen3.6-27b q4_k_m (random weights) + its random DFlash drafter"
/usr/bin/time -f "mkmodel %e s" "$D" mkmodel --preset qwen3.6-27b --type q4_k_m -q /tmp/q27.gguf 2>&1 | tail -2
/usr/bin/time -f "mkmodel --drafter %e s" "$D" mkmodel --preset qwen3.6-27b --type q4_k_m --drafter -q /tmp/q27d.gguf 2>&1 | tail -2
"$D" bench -m /tmp/q27.gguf --draft /tmp/q27d.gguf --device cuda -p 256 -n 64 --reps 2 --widths --membw-mib 2048 \
  2>"$out/q27.err" | tee "$out/q27.txt"
"$D" bench -m /tmp/q27.gguf --draft /tmp/q27d.gguf --device cuda -p 256 -n 64 --reps 2 --widths --membw-mib 2048 \
  --json 2>>"$out/q27.err" > "$out/q27.json"
# The issue's figures from the measured parts. A random drafter is accepted ~never, so its
# speculative run measures the cost of each part (one drafter step, one 16-token verify with
# state capture, the commit) and the projection puts the published acceptance on them.
python3 - "$out/q27.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ar = r["ar_step_ms"]; d = r["draft_step_ms"]; v = r["verify_step_ms"]
other = max(0.0, (r["decode_s"] - r["draft_s"] - r["verify_s"]) * 1e3 / max(1, r["n_verify"]))
al = 8.3
print("AR decode            %.1f tok/s = %.1f%% of the copy-bandwidth roofline (%.0f GB/s)" % (
    r["ar_tok_s"], 100 * r["roofline_fraction"], r["mem_copy_gbs"]))
print("verify(16) / AR step %.2f (forward alone, --widths: %.2f)" % (v / ar, r["verify16_over_step"]))
print("drafter / AR step    %.3f" % (d / ar))
print("projected DFlash     %.1f tok/s at acceptance %.1f (%.2f ms a step: drafter %.2f + verify %.2f + commit %.2f), %.2fx AR" % (
    al / ((d + v + other) / 1e3), al, d + v + other, d, v, other, al / ((d + v + other) / 1e3) / r["ar_tok_s"]))
PY
