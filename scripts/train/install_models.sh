#!/usr/bin/env bash
# Turns what scripts/train/run.py exported (OUTDIR: target shards, drafter.safetensors,
# bundle.tar) into the files of models/: both converted to Q8_0 GGUF by `dflash convert`, plus
# the training report, the corpus manifest and the held-out prompts.
#   scripts/train/install_models.sh OUTDIR [DFLASH_BIN] [DEST]
# DEST (default: the repository's models/) is where the files go: name a temporary folder to
# measure a new pair before it replaces the committed one. An export without target shards
# (run.py --target-gguf: the target is unchanged) gets models/' target GGUF copied next to its
# drafter.
set -euo pipefail
src=$(cd "$1" && pwd)
dflash=${2:-build/dflash}
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${3:-$root/models}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
name=dflash-code-25m
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/$name" "$tmp/$name-drafter"
tar -xf "$src/bundle.tar" -C "$tmp"
cp "$tmp/drafter/config.json" "$tmp/$name-drafter/"
cp "$src/drafter.safetensors" "$tmp/$name-drafter/model.safetensors"
if compgen -G "$src/model-*.safetensors" > /dev/null; then
    cp "$tmp"/target/* "$tmp/$name/"
    cp "$src"/model-*.safetensors "$tmp/$name/"
    "$dflash" convert "$tmp/$name" "$dest/$name-q8_0.gguf" --type q8_0 -q
elif [ "$dest" != "$root/models" ]; then
    cp "$root/models/$name-q8_0.gguf" "$dest/"
fi
"$dflash" convert "$tmp/$name-drafter" "$dest/$name-drafter-q8_0.gguf" --type q8_0 -q
cp "$tmp/report.json" "$dest/training_report.json"
cp "$tmp/corpus_manifest.json" "$dest/corpus_manifest.json"
cp "$tmp/prompts.jsonl" "$dest/heldout_code_prompts.jsonl"
ls -l "$dest"
