#!/usr/bin/env bash
# Chat templates against independent renderers: every conversation of
# tests/fixtures/chat/conversations rendered with every tests/fixtures/chat/*.jinja template
# by `dflash chat-template` and by @huggingface/jinja (tests/js/chat_oracle.mjs) must give
# the same bytes, or fail in both. When Python's jinja2 is installed it is checked too.
#   bash chat_oracle.sh PATH_TO_DFLASH SOURCE_DIR
set -euo pipefail
dflash=${1:?usage: chat_oracle.sh PATH_TO_DFLASH SOURCE_DIR}
root=${2:?usage: chat_oracle.sh PATH_TO_DFLASH SOURCE_DIR}
fixtures="$root/tests/fixtures/chat"

if ! command -v node >/dev/null; then
  echo "chat_oracle: node is not installed (make deps installs it)" >&2
  exit 1
fi
if [ ! -d "$root/tests/js/node_modules/@huggingface/jinja" ]; then
  echo "chat_oracle: tests/js/node_modules is missing (make deps runs npm ci there)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
templates=("$fixtures"/*.jinja)
conversations=("$fixtures"/conversations/*.json)
if [ ${#templates[@]} -lt 2 ] || [ ${#conversations[@]} -lt 20 ]; then
  echo "chat_oracle: expected >= 2 templates and >= 20 conversations, found ${#templates[@]} and ${#conversations[@]}" >&2
  exit 1
fi

node "$root/tests/js/chat_oracle.mjs" "$work/oracle" "${templates[@]}" -- "${conversations[@]}"

fail=0 same=0 both_failed=0
for tpl in "${templates[@]}"; do
  tname=$(basename "$tpl" .jinja)
  for conv in "${conversations[@]}"; do
    cname=$(basename "$conv" .json)
    expected="$work/oracle/$tname/$cname"
    if "$dflash" chat-template --template "$tpl" --messages "$conv" >"$work/ours.txt" 2>"$work/ours.err"; then
      if [ -f "$expected.err" ]; then
        echo "FAIL $tname / $cname: @huggingface/jinja failed ($(head -c 200 "$expected.err" | tr '\n' ' ')) but dflash rendered"
        fail=1
      elif ! cmp -s "$expected.txt" "$work/ours.txt"; then
        echo "FAIL $tname / $cname: prompts differ (expected first, dflash second):"
        diff <(od -c "$expected.txt") <(od -c "$work/ours.txt") | head -n 20 || true
        fail=1
      else
        same=$((same + 1))
      fi
    else
      if [ -f "$expected.err" ]; then
        both_failed=$((both_failed + 1))
      else
        echo "FAIL $tname / $cname: dflash failed: $(head -c 300 "$work/ours.err")"
        fail=1
      fi
    fi
  done
done

echo "chat_oracle: $same prompts identical, $both_failed rejected by both, over ${#templates[@]} templates x ${#conversations[@]} conversations"
# Agreeing only on failures would prove nothing: most pairs must render.
total=$(( ${#templates[@]} * ${#conversations[@]} ))
if [ "$same" -lt $(( total - 4 )) ]; then
  echo "chat_oracle: too few prompts rendered ($same of $total)" >&2
  fail=1
fi

# The renderer the models were trained with is Python's Jinja2 under transformers'
# settings. Where it is installed, it checks the same conversations plus python_only/,
# which exercise the places where @huggingface/jinja departs from it.
if python3 -c 'import jinja2' 2>/dev/null; then
  python_convs=("${conversations[@]}" "$fixtures"/python_only/*.json)
  python3 - "$work/python" "${templates[@]}" -- "${python_convs[@]}" <<'PY'
import json, os, sys
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

# transformers' chat-template environment (chat_template_utils._compile_jinja_template)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

def prepare(messages):  # the adjustments of src/text/chat.h
    out = []
    for m in messages:
        m = json.loads(json.dumps(m))
        if m.get("content") is None:
            m["content"] = ""
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                try:
                    parsed = json.loads(fn["arguments"])
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    fn["arguments"] = parsed
        out.append(m)
    return out

outdir, sep = sys.argv[1], sys.argv.index("--")
for tpath in sys.argv[2:sep]:
    tname = os.path.basename(tpath)[: -len(".jinja")]
    os.makedirs(os.path.join(outdir, tname), exist_ok=True)
    with open(tpath, encoding="utf-8") as f:
        template = env.from_string(f.read())
    for cpath in sys.argv[sep + 1:]:
        cname = os.path.basename(cpath)[: -len(".json")]
        with open(cpath, encoding="utf-8") as f:
            conv = json.load(f)
        ctx = {"messages": prepare(conv["messages"]), "add_generation_prompt": conv.get("add_generation_prompt", True)}
        for key in ("tools", "enable_thinking"):
            if key in conv:
                ctx[key] = conv[key]
        base = os.path.join(outdir, tname, cname)
        try:
            text = template.render(**ctx)
        except Exception as e:
            with open(base + ".err", "w", encoding="utf-8") as f:
                f.write(repr(e) + "\n")
            continue
        with open(base + ".txt", "w", encoding="utf-8", newline="") as f:
            f.write(text)
PY
  py_same=0
  for tpl in "${templates[@]}"; do
    tname=$(basename "$tpl" .jinja)
    for conv in "${python_convs[@]}"; do
      cname=$(basename "$conv" .json)
      expected="$work/python/$tname/$cname"
      if "$dflash" chat-template --template "$tpl" --messages "$conv" >"$work/ours.txt" 2>"$work/ours.err"; then
        if [ -f "$expected.err" ]; then
          echo "FAIL (Jinja2) $tname / $cname: Jinja2 failed ($(head -c 200 "$expected.err")) but dflash rendered"
          fail=1
        elif ! cmp -s "$expected.txt" "$work/ours.txt"; then
          echo "FAIL (Jinja2) $tname / $cname: prompts differ (expected first, dflash second):"
          diff <(od -c "$expected.txt") <(od -c "$work/ours.txt") | head -n 20 || true
          fail=1
        else
          py_same=$((py_same + 1))
        fi
      elif [ ! -f "$expected.err" ]; then
        echo "FAIL (Jinja2) $tname / $cname: dflash failed: $(head -c 300 "$work/ours.err")"
        fail=1
      fi
    done
  done
  echo "chat_oracle: Python Jinja2 agrees on $py_same prompts"
else
  echo "chat_oracle: Python's jinja2 is not installed; the Jinja2 comparison is skipped"
fi
exit $fail
