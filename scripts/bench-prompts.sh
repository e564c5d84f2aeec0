#!/usr/bin/env bash
# AR against speculative decoding over a file of prompts (JSON lines with a "text" field, e.g.
# models/heldout_code_prompts.jsonl): one `dflash bench --json` per prompt, then the totals.
# Speedup = total AR decode time / total speculative decode time for the same tokens;
# acceptance length = tokens committed / verifies over all prompts.
#   scripts/bench-prompts.sh DFLASH_BIN PROMPTS.jsonl [extra dflash bench options...]
set -euo pipefail
dflash=$1
prompts=$2
shift 2
n=$(wc -l < "$prompts")
for i in $(seq 1 "$n"); do
    text=$(sed -n "${i}p" "$prompts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"], end="")')
    "$dflash" bench -P "$text" --membw-mib 64 --json "$@" 2>/dev/null
    echo
done | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
ar = sum(r["n_gen"] / r["ar_tok_s"] for r in rows)
sp = sum(r["n_gen"] / r["spec_tok_s"] for r in rows)
tok = sum(r["n_gen"] for r in rows)
ver = sum(r["n_verify"] for r in rows)
acc = sum(r["mean_accept_len"] * r["n_verify"] for r in rows) / ver
per = " ".join("%.2f" % r["speedup"] for r in rows)
print(f"prompts {len(rows)}, {tok} tokens each way")
print(f"AR          {tok / ar:8.1f} tok/s")
print(f"speculative {tok / sp:8.1f} tok/s   speedup {ar / sp:.2f}x   (per prompt: {per})")
print(f"acceptance  {acc:.3f} tokens per verify over {ver} verifies")
draft, verify = sum(r["draft_s"] for r in rows), sum(r["verify_s"] for r in rows)
print(f"time        draft {draft:.3f} s, verify {verify:.3f} s (speculative, all prompts)")
'
