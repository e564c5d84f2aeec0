#!/usr/bin/env bash
# `make run`: the CLI end to end on what ships in the repository.
#
# Until the embedded model pair exists (models/), this converts a tiny random reference
# checkpoint (tests/fixtures/qwen35/tiny_a) with `dflash convert`, shows it with
# `dflash inspect`, generates from it plainly and with speculative decoding using the
# random reference drafter (tests/fixtures/dflash/full2), and benchmarks both. The models
# are random, so the text is noise and the drafter is almost never right (acceptance ~1 token
# per verify); what the run shows is the pipeline working, and that speculative output is
# identical to plain output.
set -euo pipefail
dflash=${1:-build/dflash}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/demo"
mkdir -p "$out"
model="$out/tiny_a-f32.gguf"
draft="$root/tests/fixtures/dflash/full2"
[ -f "$model" ] || "$dflash" convert "$root/tests/fixtures/qwen35/tiny_a" "$model" --type f32
echo "== dflash inspect $model"
"$dflash" inspect "$model" | head -n 24
prompt='def quicksort(arr):'
echo
echo "== dflash generate (plain autoregressive)"
"$dflash" generate -m "$model" -p "$prompt" -n 48 --ignore-eos
echo
echo "== dflash generate --draft (speculative: the same text)"
"$dflash" generate -m "$model" --draft "$draft" -p "$prompt" -n 48 --ignore-eos
echo
echo "== dflash bench --draft"
"$dflash" bench -m "$model" --draft "$draft" -n 48 --reps 2 --membw-mib 256
