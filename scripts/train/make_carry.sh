#!/usr/bin/env bash
# Fills .train-carry/ (git-ignored; name it in the device tool's `carry`) with what
# retrain_from_gguf.sh needs besides the repository:
#   scripts/train/make_carry.sh BUNDLE.tar [DFLASH_BIN]
# BUNDLE.tar is the target run's bundle.tar (run.py's export; kept in .train/ here): its
# target/ configs and tokenizer and drafter/config.json. From models/: the target run's report
# (prior_report.json) and the held-out prompts. From dflash on the CPU: its greedy text of every
# prompt (eval_dflash.json, 256 tokens, the prompt as scripts/bench-prompts.sh passes it: the
# trailing newline stripped) and of four prompts with their newline (dflash_greedy.json, 128
# tokens, for run.py's check_greedy).
set -euo pipefail
bundle=$1
dflash=${2:-build/dflash}
root=$(cd "$(dirname "$0")/../.." && pwd)
carry=$root/.train-carry
grep -qx '/.train-carry/' "$root/.git/info/exclude" 2>/dev/null ||
    { mkdir -p "$root/.git/info"; echo '/.train-carry/' >> "$root/.git/info/exclude"; }
rm -rf "$carry"
mkdir -p "$carry/drafter"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xf "$bundle" -C "$tmp"
for f in config.json generation_config.json tokenizer.json tokenizer_config.json; do
    cp "$tmp/target/$f" "$carry/"
done
cp "$tmp/drafter/config.json" "$carry/drafter/"
cp "$root/models/training_report.json" "$carry/prior_report.json"
cp "$root/models/heldout_code_prompts.jsonl" "$carry/prompts.jsonl"
DFLASH="$dflash" MODEL="$root/models/dflash-code-25m-q8_0.gguf" CARRY="$carry" python3 - <<'EOF'
import json, os, subprocess
dflash, model, carry = os.environ["DFLASH"], os.environ["MODEL"], os.environ["CARRY"]

def greedy(text, n):
    ids = json.loads(subprocess.run([dflash, "tokenize", "-m", model], input=text,
                                    capture_output=True, text=True, check=True).stdout)
    r = json.loads(subprocess.run([dflash, "generate", "-m", model, "--tokens",
                                   ",".join(map(str, ids)), "-n", str(n), "--json",
                                   "--ignore-eos"], capture_output=True, text=True,
                                  check=True).stdout)
    return ids, r["tokens"]

prompts = [json.loads(l)["text"] for l in open(os.path.join(carry, "prompts.jsonl"))]
evals = []
for i, p in enumerate(prompts):
    ids, toks = greedy(p.rstrip("\n"), 256)
    evals.append({"prompt": i, "ids": ids, "greedy": toks})
json.dump(evals, open(os.path.join(carry, "eval_dflash.json"), "w"))
checks = []
for i in (0, 5, 11, 17):
    ids, toks = greedy(prompts[i], 128)
    checks.append({"prompt": i, "ids": ids, "greedy": toks})
json.dump(checks, open(os.path.join(carry, "dflash_greedy.json"), "w"))
EOF
ls -l "$carry"
