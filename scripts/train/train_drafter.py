"""Drafter training loop: the target's features computed per batch (the sequences are too many
to keep their features), random anchors per step, AdamW, warm-up then cosine, a validation loss
on sequences continued from held-out prompts (the best state is kept: a drafter memorizes its
training sequences quickly), checkpoint + resume under the deadline."""
import os
import time

import torch

from common import log
from drafter import Drafter, block_loss, init_weights, training_batch
from generate import features
from target import lr_at


def train(cfg, target, seqs, val_seqs, embed_w, loss_start, out_dir, deadline, train_seconds, batch,
          n_anchors, gamma, peak_lr, device, feats_store=None, eval_every=500, finish=False):
    """feats_store: the target features of every sequence, precomputed ([n, S, F] bf16, see
    generate.features); None computes them per batch (slower, no memory limit).
    finish: a single-invocation run (nothing to resume on a fresh machine): the step count is
    fitted to train_seconds of wall clock, validations included, and re-fitted at each
    validation; when the deadline nears the best state so far is kept instead of a checkpoint."""
    block = cfg["dflash_config"]["block_size"]
    mask_id = cfg["dflash_config"]["mask_token_id"]
    model = init_weights(Drafter(cfg)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.01,
                            fused=True)
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    step, total, history, best = 0, None, [], (float("inf"), None, 0)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, total, history, best = ck["step"], ck["total"], ck["history"], ck["best"]
        log(f"drafter: resumed at step {step} of {total}")
    log(f"drafter: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{seqs.shape[0]} sequences of {seqs.shape[1]}")
    gen = torch.Generator().manual_seed(100 + step)
    n, S = seqs.shape
    ctx_pos = torch.arange(S, device=device)[None].expand(batch, S)
    t_mark, step0 = None, step
    t_end = time.time() + train_seconds
    while total is None or step < total:
        if finish and deadline.near(40.0) and best[1] is not None:
            log(f"drafter: out of time at step {step}; keeping the best state so far")
            break
        if deadline.near(40.0):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "total": total, "history": history, "best": best}, ckpt_path)
            log(f"drafter: out of time at step {step}; checkpoint saved")
            return None
        rows = torch.randint(0, n, (batch,), generator=gen)
        if feats_store is None:
            rows = rows.to(device)
            feats = features(target, seqs[rows], cfg["dflash_config"]["target_layer_ids"], batch)
        else:
            feats = feats_store[rows.to(feats_store.device)].to(device, non_blocking=True)
            rows = rows.to(device)
        noise_ids, pos, mask, labels = training_batch(seqs[rows], loss_start, block,
                                                      n_anchors, mask_id, gen)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total or 10 ** 9, peak_lr, 100)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hidden = model(feats, embed_w[noise_ids], ctx_pos, pos, mask)
            loss, acc = block_loss(hidden, embed_w, labels, block, gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step == step0 + 10:
            torch.cuda.synchronize()
            t_mark = time.time()
        if total is None and step == step0 + 30:
            torch.cuda.synchronize()
            per_step = (time.time() - t_mark) / 20
            total = max(step + 20, int(train_seconds / per_step))
            log(f"drafter: {per_step * 1000:.1f} ms/step -> {total} steps")
        if step % eval_every == 0 or step == total:
            vloss, vacc = validate(model, target, val_seqs, embed_w, cfg, loss_start, 32,
                                   gamma, device)
            history.append((step, round(loss.item(), 4), round(vloss, 4), vacc[:8]))
            log(f"drafter: step {step}/{total} loss {loss.item():.4f} val {vloss:.4f} "
                f"val acc@1..8 {vacc[:8]}")
            if vloss < best[0]:
                best = (vloss, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
            if finish and step < total and t_mark is not None:
                # Steps per second so far, validations included: fit the rest into t_end.
                rate = (step - step0 - 10) / max(1e-3, time.time() - t_mark)
                fit = step + int(max(0.0, t_end - time.time()) * rate)
                if fit < total:
                    log(f"drafter: {total} steps would overrun; the schedule now ends at {fit}")
                    total = max(step + 1, fit)
    model.load_state_dict(best[1])
    log(f"drafter: keeping step {best[2]} (validation loss {best[0]:.4f})")
    return model, {"steps": step, "best_step": best[2], "best_val_loss": round(best[0], 4),
                   "history": history}


@torch.no_grad()
def validate(model, target, val_seqs, embed_w, cfg, loss_start, n_anchors, gamma, device):
    """Loss and per-slot accuracy on sequences the drafter never trains on (fixed anchors)."""
    block = cfg["dflash_config"]["block_size"]
    gen = torch.Generator().manual_seed(4242)
    model.eval()
    tot, accs, nb = 0.0, None, 0
    for i in range(0, val_seqs.shape[0], 32):
        s = val_seqs[i:i + 32]
        feats = features(target, s, cfg["dflash_config"]["target_layer_ids"], 32)
        noise_ids, pos, mask, labels = training_batch(s, loss_start, block, n_anchors,
                                                      cfg["dflash_config"]["mask_token_id"], gen)
        ctx_pos = torch.arange(s.shape[1], device=device)[None].expand(s.shape[0], -1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hidden = model(feats, embed_w[noise_ids], ctx_pos, pos, mask)
            loss, acc = block_loss(hidden, embed_w, labels, block, gamma)
        tot += loss.item()
        accs = acc if accs is None else accs + acc
        nb += 1
    model.train()
    return tot / nb, [round(a, 3) for a in (accs / nb).tolist()]
