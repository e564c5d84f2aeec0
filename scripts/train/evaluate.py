"""Acceptance length of the drafter on held-out code prompts, measured in PyTorch by replaying
greedy chain speculative decoding exactly as dflash runs it: at each step the drafter sees the
target features of every committed token (context rows 0 .. c-1) and the block
[last committed token, MASK ...] at positions c .. c+B-1; the drafts are accepted while they
equal the target's greedy tokens; a step commits the accepted drafts plus one target token.
Acceptance length = mean tokens committed per step (what `dflash bench` reports)."""
import json
import random

import torch

from common import log
from generate import features, greedy


def pick_prompts(heldout_docs, n, min_chars, seed):
    """Prompts cut from held-out Python files at line boundaries: a run of whole lines of at
    least min_chars, starting at a line that opens a def or class when one is found."""
    rng = random.Random(seed)
    docs = [d for d in heldout_docs if d["kind"] == ".py" and len(d["text"]) > 4 * min_chars]
    rng.shuffle(docs)
    prompts = []
    for d in docs:
        lines = d["text"].splitlines(keepends=True)
        starts = [i for i, l in enumerate(lines) if l.lstrip().startswith(("def ", "class "))]
        if not starts:
            continue
        i = rng.choice(starts)
        text = ""
        while i < len(lines) and len(text) < min_chars:
            text += lines[i]
            i += 1
        if len(text) >= min_chars and text.endswith("\n"):
            prompts.append({"source": d["path"].split("site-packages/")[-1], "text": text})
        if len(prompts) == n:
            break
    return prompts


@torch.no_grad()
def acceptance(target, drafter, tok, prompts, n_new, device, seq_cache=None, fixed=None):
    """seq_cache: a dict that keeps each prompt's greedy text and features, so that a second
    drafter is measured on exactly the same target tokens (and without generating again).
    fixed: per prompt {"ids": prompt ids, "greedy": target tokens} made elsewhere (dflash's own
    greedy text: the replay then sees what `dflash bench` verifies against, and costs one
    forward per prompt instead of n_new)."""
    cfg = drafter.c
    block = cfg["dflash_config"]["block_size"]
    mask_id = cfg["dflash_config"]["mask_token_id"]
    layer_ids = cfg["dflash_config"]["target_layer_ids"]
    embed_w = target.get_input_embeddings().weight
    per_prompt, all_steps = [], []
    for i, p in enumerate(prompts):
        ids = torch.tensor([tok.encode(p["text"]).ids], device=device)
        key = (p["text"], tuple(layer_ids))
        if seq_cache is not None and key in seq_cache:
            seq, feats, P = seq_cache[key]
        else:
            if fixed is not None:
                ids = torch.tensor([fixed[i]["ids"]], device=device)
                seq = torch.tensor([fixed[i]["ids"] + fixed[i]["greedy"][:n_new]], device=device)
            else:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    seq = greedy(target, ids, n_new)
            feats = features(target, seq, layer_ids)
            P = ids.shape[1]
            if seq_cache is not None:
                seq_cache[key] = (seq, feats, P)
        L = seq.shape[1]
        c, steps = P, []          # after the prefill the target's first token is the first bonus
        while c + block <= L:
            blk = torch.full((1, block), mask_id, device=device)
            blk[0, 0] = seq[0, c]
            pos = torch.arange(c, c + block, device=device)[None]
            mask = torch.ones(1, 1, block, c + block, dtype=torch.bool, device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                h = drafter(feats[:, :c], embed_w[blk], torch.arange(c, device=device)[None],
                            pos, mask)
            drafts = (h[0, 1:].float() @ embed_w.float().t()).argmax(-1)
            truth = seq[0, c + 1:c + block]
            ok = (drafts == truth).int()
            n_acc = int(ok.cumprod(0).sum())
            steps.append(n_acc + 1)
            c += n_acc + 1
        per_prompt.append(sum(steps) / len(steps))
        all_steps += steps
    mean = sum(all_steps) / len(all_steps)
    log(f"acceptance length {mean:.3f} over {len(all_steps)} steps, {len(prompts)} prompts "
        f"(per prompt {min(per_prompt):.2f} .. {max(per_prompt):.2f})")
    hist = [all_steps.count(k) for k in range(1, block + 1)]
    return {"acceptance_length": round(mean, 4), "steps": len(all_steps),
            "per_prompt": [round(x, 3) for x in per_prompt], "histogram": hist,
            "new_tokens_per_prompt": n_new}


def save_prompts(prompts, path):
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
