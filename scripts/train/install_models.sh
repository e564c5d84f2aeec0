#!/usr/bin/env bash
# Turns what scripts/train/run.py exported (OUTDIR: target shards, drafter.safetensors,
# bundle.tar) into the files of models/: both converted to Q8_0 GGUF by `dflash convert`, plus
# the training report, the corpus manifest and the held-out prompts.
#   scripts/train/install_models.sh OUTDIR [DFLASH_BIN]
set -euo pipefail
src=$(cd "$1" && pwd)
dflash=${2:-build/dflash}
root=$(cd "$(dirname "$0")/../.." && pwd)
name=dflash-code-25m
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$name" "$tmp/$name-drafter"
tar -xf "$src/bundle.tar" -C "$tmp"
cp "$tmp"/target/* "$tmp/$name/"
cp "$src"/model-*.safetensors "$tmp/$name/"
cp "$tmp/drafter/config.json" "$tmp/$name-drafter/"
cp "$src/drafter.safetensors" "$tmp/$name-drafter/model.safetensors"
"$dflash" convert "$tmp/$name" "$root/models/$name-q8_0.gguf" --type q8_0 -q
"$dflash" convert "$tmp/$name-drafter" "$root/models/$name-drafter-q8_0.gguf" --type q8_0 -q
cp "$tmp/report.json" "$root/models/training_report.json"
cp "$tmp/corpus_manifest.json" "$root/models/corpus_manifest.json"
cp "$tmp/prompts.jsonl" "$root/models/heldout_code_prompts.jsonl"
ls -l "$root/models"
