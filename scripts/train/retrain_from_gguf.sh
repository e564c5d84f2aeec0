#!/usr/bin/env bash
# One self-contained GPU invocation that retrains the embedded drafter against the committed
# target GGUF (nothing persists between invocations on the device machine, so every call
# rebuilds the target, the corpus streams and the drafter data):
#   scripts/train/retrain_from_gguf.sh OUTDIR SECONDS [--smoke-first] [run.py options...]
# Needs .train-carry/ (git-ignored; carried to the machine): config.json, generation_config.json,
# tokenizer.json, tokenizer_config.json, drafter/config.json, prior_report.json (the target's
# run), prompts.jsonl (models/heldout_code_prompts.jsonl) and dflash_greedy.json (dflash's
# greedy tokens on four prompts, for the target check).
# OUTDIR gets: run/ (drafter.safetensors + bundle.tar, what install_models.sh takes), run.log,
# check.txt (the numpy rebuild against the plain-Python one) and, with --smoke-first, smoke.log.
# SECONDS is the wall clock the whole script may take; run.py's budget is what is left of it.
set -uo pipefail
out=$1
total=$2
shift 2
smoke=0
if [ "${1:-}" = "--smoke-first" ]; then smoke=1; shift; fi
start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
carry=$root/.train-carry
target=$root/models/dflash-code-25m-q8_0.gguf
drafter=$root/models/dflash-code-25m-drafter-q8_0.gguf
export PYTHONUNBUFFERED=1
mkdir -p "$out"
rm -rf /tmp/dft-check /tmp/dft-smoke /tmp/dft-smoke-out /tmp/dft-work
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true

# The numpy conversion against the plain-Python one (which check_gguf_to_hf.py also checks
# against the original bf16 shards where they exist), on the CPU while the GPU works.
( python3 "$here/gguf_to_hf.py" target "$target" /tmp/dft-check --config-dir "$carry" &&
  python3 "$here/check_gguf_to_hf.py" "$target" /tmp/dft-check ) > "$out/check.txt" 2>&1 &
checker=$!

common=(--target-gguf "$target" --bundle "$carry" --baseline-drafter "$drafter")
if [ $smoke = 1 ]; then
    if ! timeout 240 python3 "$here/run.py" --smoke --work /tmp/dft-smoke --out /tmp/dft-smoke-out \
            "${common[@]}" --set drafter_s=15 --budget-s 220 > "$out/smoke.log" 2>&1; then
        echo "smoke run failed:"
        tail -40 "$out/smoke.log"
        wait $checker
        exit 1
    fi
    grep -E "target check|acceptance length|s\] stage" "$out/smoke.log" | cut -c1-400
fi

left=$(( total - ($(date +%s) - start) - 20 ))
echo "full run: $left s of wall clock"
timeout "$left" python3 "$here/run.py" --work /tmp/dft-work --out "$out/run" "${common[@]}" \
    --budget-s $(( left - 20 )) "$@" > "$out/run.log" 2>&1
rc=$?
# A run cut short still leaves its best drafter behind: bring it back.
if [ ! -f "$out/run/drafter.safetensors" ] && [ -f /tmp/dft-work/drafter/hf/model.safetensors ]; then
    mkdir -p "$out/run"
    cp /tmp/dft-work/drafter/hf/model.safetensors "$out/run/drafter.safetensors"
    cp /tmp/dft-work/drafter/hf/config.json "$out/run/drafter_config.json"
fi
wait $checker
echo "run.py exit status $rc after $(( $(date +%s) - start )) s"
grep -v -E "generate: [0-9]+/" "$out/run.log" | grep -E "stage|check|ms/step|precomputed|acceptance|keeping|drafter: step|error|Error|Traceback|corpus:|encoded" | cut -c1-600
tail -5 "$out/run.log"
tail -3 "$out/check.txt"
exit $rc
