#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one go: build, op checks, model checks (transformers
# fixtures, verify == decode, lossless speculative decoding), the CLI with --device cuda,
# compute-sanitizer over the op checks, and timings of a 0.8B-shaped q4_k_m model.
# Prints a summary table last; full logs go to $OUT (or ./gpu-check-out).
#
#   bash scripts/gpu-check.sh [--no-bench] [--no-memcheck]
#
# Run from the repository root. Jansson (the core's only dependency) may be missing on the
# GPU machine: .debs/ (git-ignored) holds libjansson-dev and libjansson4 packages, unpacked
# here into /opt/deps.
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
bench=1 memcheck=1
for a in "$@"; do
  case $a in
    --no-bench) bench=0 ;;
    --no-memcheck) memcheck=0 ;;
    *) echo "usage: gpu-check.sh [--no-bench] [--no-memcheck]" >&2; exit 2 ;;
  esac
done

declare -a names results
note() { names+=("$1"); results+=("$2"); }
t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start ))s; }

# ---- dependencies ----
prefix=()
if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  mkdir -p /opt/deps
  for d in .debs/*.deb; do dpkg -x "$d" /opt/deps; done
  export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  prefix=(-DCMAKE_PREFIX_PATH=/opt/deps/usr)
fi
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

# ---- build ----
build=build-cuda-gpu
if cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DDFLASH_TESTS=OFF \
     "${prefix[@]}" > "$out/build.log" 2>&1 &&
   cmake --build $build -j "$(nproc)" >> "$out/build.log" 2>&1; then
  note "build (sm_90, $(elapsed))" PASS
else
  tail -n 40 "$out/build.log"
  note "build" FAIL
  printf '\n==== summary ====\n'; for i in "${!names[@]}"; do printf '%-52s %s\n' "${names[$i]}" "${results[$i]}"; done
  exit 1
fi
bin=$build

# ---- op checks ----
if "$bin/cuda_ops_check" --bench > "$out/ops.log" 2>&1; then note "cuda_ops_check ($(grep -c 'PASS' "$out/ops.log") rows, $(elapsed))" PASS
else note "cuda_ops_check ($(grep -c 'FAIL' "$out/ops.log") failing rows)" FAIL; fi
grep -E 'FAIL|error' "$out/ops.log" | head -n 20

# ---- model checks ----
work=$(mktemp -d)
if "$bin/cuda_model_check" "$work" > "$out/model.log" 2>&1; then note "cuda_model_check ($(grep -c 'PASS' "$out/model.log") rows, $(elapsed))" PASS
else note "cuda_model_check ($(grep -c 'FAIL' "$out/model.log") failing rows)" FAIL; fi
grep -E 'FAIL|error' "$out/model.log" | head -n 20

# ---- the CLI: generate --device cuda, AR vs speculative ----
cli_ok=FAIL
{
  "$bin/dflash" convert tests/fixtures/qwen35/tiny_a "$work/a.gguf" --type f32 >/dev/null 2>&1 &&
  "$bin/dflash" generate -m "$work/a.gguf" --device cuda --tokens 35,200,17,99,301,5,64,140,12,250 -n 40 --ignore-eos --json > "$work/ar.json" &&
  "$bin/dflash" generate -m "$work/a.gguf" --device cuda --draft tests/fixtures/dflash/full2 --tokens 35,200,17,99,301,5,64,140,12,250 -n 40 --ignore-eos --json > "$work/spec.json" &&
  "$bin/dflash" generate -m "$work/a.gguf" --device cuda --draft tests/fixtures/dflash/swa2 --block 4 --tokens 35,200,17,99,301,5,64,140,12,250 -n 40 --ignore-eos --json > "$work/spec4.json" &&
  "$bin/dflash" generate -m "$work/a.gguf" --device cpu --tokens 35,200,17,99,301,5,64,140,12,250 -n 40 --ignore-eos --json > "$work/cpu.json" &&
  python3 - "$work/ar.json" "$work/spec.json" "$work/spec4.json" "$work/cpu.json" <<'PY'
import json, sys
ar, sp, sp4, cpu = (json.load(open(f)) for f in sys.argv[1:])
assert ar["n_gen"] == 40 and len(ar["tokens"]) == 40, ar["n_gen"]
for s in (sp, sp4):
    assert s["tokens"] == ar["tokens"], "speculative tokens differ from AR"
    assert s["text"] == ar["text"]
    assert s["n_verify"] > 0
same = sum(a == b for a, b in zip(ar["tokens"], cpu["tokens"]))
print(f"CLI: AR == speculative (full2, swa2 block 4); cuda vs cpu AR tokens equal: {same}/40")
PY
} > "$out/cli.log" 2>&1 && cli_ok=PASS
# a device that does not exist is an error with a message, not a crash
if "$bin/dflash" generate -m "$work/a.gguf" --device cuda:57 -p x -n 1 > /dev/null 2> "$work/err.txt"; then cli_ok=FAIL
elif ! grep -q 'cuda:57' "$work/err.txt"; then cli_ok=FAIL; fi
cat "$work/err.txt" >> "$out/cli.log"
note "CLI generate --device cuda: AR == --draft" $cli_ok
tail -n 3 "$out/cli.log"

# ---- timings: a 0.8B-shaped q4_k_m model; ops alone at its shapes ----
if [ $bench = 1 ]; then
  if "$bin/dflash" mkmodel --preset qwen3.5-0.8b --type q4_k_m -q "$work/q08.gguf" > "$out/bench.log" 2>&1 &&
     "$bin/dflash" bench -m "$work/q08.gguf" --device cuda -p 256 -n 128 --reps 3 --widths --membw-mib 64 >> "$out/bench.log" 2>&1; then
    note "bench qwen3.5-0.8b q4_k_m ($(grep 'decode (AR)' "$out/bench.log" | awk '{print $3, $4}'))" DONE
  else
    note "bench qwen3.5-0.8b q4_k_m" FAIL
  fi
  grep -E 'prefill|decode \(|forward of n' "$out/bench.log"
fi

# ---- compute-sanitizer ----
if [ $memcheck = 1 ]; then
  if command -v compute-sanitizer >/dev/null; then
    timeout 150 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
      "$bin/cuda_ops_check" --quick > "$out/memcheck.log" 2>&1
    rc=$?
    summary=$(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -n 1)
    if [ $rc = 0 ]; then note "compute-sanitizer memcheck ($summary)" PASS
    elif [ $rc = 124 ]; then note "compute-sanitizer memcheck (timed out)" FAIL
    else note "compute-sanitizer memcheck (rc $rc: $summary)" FAIL; fi
  else
    note "compute-sanitizer (not installed)" SKIP
  fi
fi
rm -rf "$work"

printf '\n==== tables ====\n'
grep -E '^(check|vs|long|verify|spec)' "$out/model.log"
[ -f "$out/bench.log" ] && grep -E 'prefill|decode \(|forward of n' "$out/bench.log"
printf '\n==== summary (%s) ====\n' "$(elapsed)"
fail=0
for i in "${!names[@]}"; do
  printf '%-64s %s\n' "${names[$i]}" "${results[$i]}"
  [ "${results[$i]}" = FAIL ] && fail=1
done
exit $fail
