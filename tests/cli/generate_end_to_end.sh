#!/usr/bin/env bash
# The CLI end to end on a fixture: convert, inspect, generate (AR and speculative with the
# reference drafter fixture: same tokens), and bad input giving a named error and exit 1.
# usage: generate_end_to_end.sh PATH_TO_DFLASH SOURCE_DIR
set -euo pipefail
dflash=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$dflash" convert "$src/tests/fixtures/qwen35/tiny_a" "$work/a.gguf" --type f32 >/dev/null 2>&1 \
  || fail "convert"
"$dflash" inspect "$work/a.gguf" > "$work/inspect.txt" || fail "inspect"
grep -q 'qwen35' "$work/inspect.txt" || fail "inspect does not name the architecture"
"$dflash" inspect "$work/a.gguf" --json --tensors > "$work/inspect.json" || fail "inspect --json"
node -e '
const j = JSON.parse(require("fs").readFileSync(process.argv[1]));
if (j.hparams.n_layer !== 4 || j.hparams.n_embd !== 64) throw new Error("hparams " + JSON.stringify(j.hparams));
if (!j.tensors.some(t => t.name === "blk.3.attn_q.weight")) throw new Error("tensor list");
' "$work/inspect.json" || fail "inspect --json content"

prompt='def quicksort(arr):'
"$dflash" generate -m "$work/a.gguf" -p "$prompt" -n 40 --ignore-eos --json > "$work/ar.json" 2>/dev/null \
  || fail "generate (AR)"
"$dflash" generate -m "$work/a.gguf" --draft "$src/tests/fixtures/dflash/full2" -p "$prompt" -n 40 \
  --ignore-eos --json > "$work/spec.json" 2>/dev/null || fail "generate --draft"
"$dflash" generate -m "$work/a.gguf" --draft "$src/tests/fixtures/dflash/full2" --block 4 -p "$prompt" \
  -n 40 --ignore-eos --json > "$work/spec4.json" 2>/dev/null || fail "generate --draft --block 4"
node -e '
const fs = require("fs");
const [ar, sp, sp4] = process.argv.slice(1).map(f => JSON.parse(fs.readFileSync(f)));
if (ar.n_gen !== 40 || ar.tokens.length !== 40) throw new Error("AR generated " + ar.n_gen);
for (const s of [sp, sp4]) {
  if (JSON.stringify(s.tokens) !== JSON.stringify(ar.tokens)) throw new Error("speculative tokens differ from AR");
  if (s.text !== ar.text) throw new Error("speculative text differs from AR");
  if (!(s.n_verify > 0)) throw new Error("no verify ran");
}
' "$work/ar.json" "$work/spec.json" "$work/spec4.json" || fail "speculative output differs from AR"

# Bad input: a truncated model, a missing file, a drafter for another target.
head -c 1000 "$work/a.gguf" > "$work/trunc.gguf"
if "$dflash" generate -m "$work/trunc.gguf" -p x -n 1 2> "$work/err.txt"; then fail "truncated model accepted"; fi
grep -q 'trunc.gguf' "$work/err.txt" || fail "error does not name the file: $(cat "$work/err.txt")"
if "$dflash" inspect "$work/nope.gguf" 2> "$work/err.txt"; then fail "missing file accepted"; fi
"$dflash" convert "$src/tests/fixtures/qwen35/tiny_vh" "$work/vh.gguf" --type f32 >/dev/null 2>&1 || fail "convert vh"
if "$dflash" generate -m "$work/vh.gguf" --draft "$src/tests/fixtures/dflash/full2" -p x -n 1 2> "$work/err.txt"; then
  fail "a drafter for another target was accepted"
fi
grep -qi 'drafter' "$work/err.txt" || fail "mismatch error does not say drafter: $(cat "$work/err.txt")"
echo "1 passed, 0 failed"
