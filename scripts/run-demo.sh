#!/usr/bin/env bash
# `make run`: speculative generation on the embedded pair (models/, see models/README.md), with
# nothing downloaded: the text of a code prompt's continuation, then AR against speculative
# decoding timed in one `dflash bench` run (tok/s, acceptance length, speedup).
set -euo pipefail
dflash=${1:-build/dflash}
root=$(cd "$(dirname "$0")/.." && pwd)
export DFLASH_MODELS="$root/models"
prompt='class Stack:
    """A last-in, first-out stack."""

    def __init__(self):
'
echo "== dflash generate (speculative, the embedded pair; greedy)"
printf '%s' "$prompt"
"$dflash" generate -p "$prompt" -n 96
echo
echo "== dflash bench (the same prompt: AR, then speculative, in one run)"
"$dflash" bench -P "$prompt" -n 96 --reps 2 --membw-mib 256
