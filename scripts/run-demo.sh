#!/usr/bin/env bash
# `make run`: the CLI end to end on what ships in the repository.
#
# Until the embedded model pair exists (models/), this converts one of the tiny random
# reference checkpoints in tests/fixtures/qwen35 with `dflash convert`, shows it with
# `dflash inspect`, and generates from it with `dflash generate`. The model is random, so
# the text is noise; what the run shows is the pipeline working and its speed.
set -euo pipefail
dflash=${1:-build/dflash}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/demo"
mkdir -p "$out"
model="$out/tiny_vh-q8_0.gguf"
if [ ! -f "$model" ]; then
  "$dflash" convert "$root/tests/fixtures/qwen35/tiny_vh" "$model" --type q8_0
fi
echo "== dflash inspect $model"
"$dflash" inspect "$model" | head -n 30
echo
echo "== dflash generate (random tiny model: expect noise)"
"$dflash" generate -m "$model" -p "def quicksort(arr):" -n 48
