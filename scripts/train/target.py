"""The target: a small Qwen3_5ForCausalLM (transformers' own class), trained from scratch on the
corpus token stream with AdamW, bf16 autocast, a warm-up then cosine learning rate, in
time-bounded sessions that checkpoint and resume."""
import math
import os

import torch
import torch.nn.functional as F

from common import log

# 8 layers, every 4th full attention, hidden 512: about 26M parameters with a tied embedding;
# Q8_0 leaves it at about 28 MB, next to its drafter within the 40 MB of models/.
ARCH = dict(hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
            num_attention_heads=8, num_key_value_heads=2, head_dim=64,
            linear_num_key_heads=4, linear_num_value_heads=8,
            linear_key_head_dim=64, linear_value_head_dim=64, linear_conv_kernel_dim=4,
            layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
            tie_word_embeddings=True, rms_norm_eps=1e-6, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1.0e6,
                             "partial_rotary_factor": 0.25})
SMOKE_ARCH = dict(ARCH, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                  num_attention_heads=2, num_key_value_heads=1,
                  linear_num_key_heads=2, linear_num_value_heads=2,
                  layer_types=["linear_attention"] * 3 + ["full_attention"])


def make_config(vocab_size, specials, smoke):
    from transformers import Qwen3_5TextConfig
    arch = SMOKE_ARCH if smoke else ARCH
    return Qwen3_5TextConfig(vocab_size=vocab_size, eos_token_id=specials["<|endoftext|>"],
                             pad_token_id=specials["<|endoftext|>"], bos_token_id=None, **arch)


def batches(data, seq, batch, gen):
    """Random windows of seq + 1 tokens (inputs and next-token labels)."""
    n = data.size - seq - 1
    while True:
        starts = torch.randint(0, n, (batch,), generator=gen)
        rows = [torch.from_numpy(data[s:s + seq + 1].astype("int64")) for s in starts.tolist()]
        yield torch.stack(rows)


@torch.no_grad()
def heldout_loss(model, data, seq, n_windows, device):
    """Mean next-token loss over fixed, evenly spaced held-out windows."""
    model.eval()
    starts = torch.linspace(0, data.size - seq - 2, n_windows).long().tolist()
    total = 0.0
    for i in range(0, n_windows, 16):
        rows = [torch.from_numpy(data[s:s + seq + 1].astype("int64")) for s in starts[i:i + 16]]
        x = torch.stack(rows).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits
        total += F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(),
                                 reduction="sum").item()
    model.train()
    return total / (n_windows * seq)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train(cfg, train_data, held_data, out_dir, deadline, train_seconds, seq, batch, peak_lr,
          device):
    """Trains until the planned step count (fixed on the first session from the measured step
    time and train_seconds) is reached; returns None when cut short by the deadline."""
    from transformers import Qwen3_5ForCausalLM
    torch.manual_seed(1234)
    model = Qwen3_5ForCausalLM(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=True)
    ckpt_path = os.path.join(out_dir, "checkpoint.pt")
    step, total, history = 0, None, []
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, total, history = ck["step"], ck["total"], ck["history"]
        log(f"target: resumed at step {step} of {total}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"target: {n_params / 1e6:.2f}M parameters, batch {batch} x {seq}")
    gen = torch.Generator().manual_seed(step + 1)
    it = batches(train_data, seq, batch, gen)
    model.train()
    t_start, step0, warm = None, step, 20
    while total is None or step < total:
        if deadline.near(45.0):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "total": total, "history": history}, ckpt_path)
            log(f"target: out of time at step {step}; checkpoint saved")
            return None
        x = next(it).to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total or 10 ** 9, peak_lr, 200)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step == step0 + warm:
            torch.cuda.synchronize()
            t_start = deadline.left()
        if total is None and step == step0 + warm + 20:
            torch.cuda.synchronize()
            per_step = (t_start - deadline.left()) / 20
            total = max(step + 50, int(train_seconds / per_step))
            log(f"target: {per_step * 1000:.0f} ms/step, {batch * seq / per_step / 1e3:.0f}K tok/s"
                f" -> {total} steps ({total * batch * seq / 1e6:.0f}M tokens)")
        if step % 100 == 0:
            history.append((step, round(loss.item(), 4)))
            log(f"target: step {step}/{total} loss {loss.item():.4f}")
    held = heldout_loss(model, held_data, seq, 256, device)
    log(f"target: held-out loss {held:.4f} (ppl {math.exp(held):.2f})")
    model.config.use_cache = True
    return model, {"steps": step, "tokens_seen": step * batch * seq,
                   "train_loss_last": history[-1][1] if history else None,
                   "heldout_loss": round(held, 4), "heldout_ppl": round(math.exp(held), 3),
                   "params": n_params, "history": history}
