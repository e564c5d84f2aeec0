"""The DFlash drafter, written here from the published semantics (docs/DFLASH_DRAFTER.md,
section 1), with z-lab's parameter names so that `dflash convert` reads what it saves.

    ctx = hidden_norm(fc(target features))                   context rows, no input norm
    per layer:  h = input_layernorm(x)
                q = rope(q_norm(q_proj(h)))  k, v from [ctx ; h] (k normed + roped)
                x += o_proj(attention(q, k, v))    x += mlp(post_attention_layernorm(x))
    logits = target lm_head(norm(x))

Training follows the DFlash recipe (facts from SpecForge's trainer): per sequence, random anchor
positions; each anchor opens a block [token at the anchor, MASK x (B-1)] at positions
anchor .. anchor+B-1 that sees the context rows strictly before the anchor and its own block
(bidirectional), never another block; block slot k (k >= 1) predicts the token at anchor + k,
its cross-entropy weighted by exp(-(k - 1) / gamma)."""
import json
import math
import os

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    """Qwen3's RMSNorm: plain weight (not the zero-centred 1 + w of the Qwen3.5 target)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class Attention(torch.nn.Module):
    def __init__(self, E, H, Hkv, D, eps):
        super().__init__()
        self.H, self.Hkv, self.D = H, Hkv, D
        self.q_proj = torch.nn.Linear(E, H * D, bias=False)
        self.k_proj = torch.nn.Linear(E, Hkv * D, bias=False)
        self.v_proj = torch.nn.Linear(E, Hkv * D, bias=False)
        self.o_proj = torch.nn.Linear(H * D, E, bias=False)
        self.q_norm = RMSNorm(D, eps)
        self.k_norm = RMSNorm(D, eps)


class MLP(torch.nn.Module):
    def __init__(self, E, F_):
        super().__init__()
        self.gate_proj = torch.nn.Linear(E, F_, bias=False)
        self.up_proj = torch.nn.Linear(E, F_, bias=False)
        self.down_proj = torch.nn.Linear(F_, E, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c["hidden_size"], c["num_attention_heads"],
                                   c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"])
        self.mlp = MLP(c["hidden_size"], c["intermediate_size"])
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


def rope(x, pos, theta):
    """NEOX rotate-half over the whole head dim. x [b, h, n, D], pos [b, n]."""
    D = x.shape[-1]
    inv = theta ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    ang = pos.float()[:, None, :, None] * inv            # [b, 1, n, D/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x.float().chunk(2, dim=-1)
    rot = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rot * sin).to(x.dtype)


class Drafter(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        n_cap = len(c["dflash_config"]["target_layer_ids"])
        E = c["hidden_size"]
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.fc = torch.nn.Linear(n_cap * E, E, bias=False)
        self.hidden_norm = RMSNorm(E, c["rms_norm_eps"])
        self.norm = RMSNorm(E, c["rms_norm_eps"])

    def forward(self, feats, noise, ctx_pos, blk_pos, mask):
        """feats [b, S, n_cap*E], noise [b, Q, E] embedded block tokens, ctx_pos [b, S],
        blk_pos [b, Q], mask [b, 1, Q, S + Q] (True = visible) -> hidden [b, Q, E]."""
        theta = self.c["rope_theta"]
        ctx = self.hidden_norm(self.fc(feats))
        x = noise
        b, Q, _ = x.shape
        S = ctx.shape[1]
        kpos = torch.cat([ctx_pos, blk_pos], dim=1)
        for layer in self.layers:
            a = layer.self_attn
            h = layer.input_layernorm(x)
            both = torch.cat([ctx, h], dim=1)
            q = a.q_norm(a.q_proj(h).view(b, Q, a.H, a.D)).transpose(1, 2)
            k = a.k_norm(a.k_proj(both).view(b, S + Q, a.Hkv, a.D)).transpose(1, 2)
            v = a.v_proj(both).view(b, S + Q, a.Hkv, a.D).transpose(1, 2)
            q, k = rope(q, blk_pos, theta), rope(k, kpos, theta)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            x = x + a.o_proj(out.transpose(1, 2).reshape(b, Q, a.H * a.D))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x)


def make_config(target_cfg, mask_id, layer_ids, block, n_layers, smoke):
    E = target_cfg.hidden_size
    heads = max(2, E // 64)
    return {
        "architectures": ["DFlashDraftModel"], "model_type": "qwen3", "dtype": "bfloat16",
        "hidden_size": E, "num_hidden_layers": n_layers,
        "intermediate_size": 2 * E if not smoke else E,
        "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 4),
        "head_dim": 64, "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False,
        "attention_dropout": 0.0, "max_position_embeddings": 4096,
        "vocab_size": target_cfg.vocab_size, "tie_word_embeddings": False,
        "num_target_layers": target_cfg.num_hidden_layers,
        "layer_types": ["full_attention"] * n_layers, "use_sliding_window": False,
        "rope_theta": 1.0e6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1.0e6},
        "block_size": block,
        "dflash_config": {"mask_token_id": mask_id, "target_layer_ids": layer_ids,
                          "block_size": block},
    }


def training_batch(seqs, loss_start, block, n_anchors, mask_id, gen):
    """Anchors, block token ids, positions, visibility mask and labels for one batch.
    seqs [b, S] tokens; anchors are drawn from loss_start .. S - block (target-generated
    region) without replacement, sorted."""
    b, S = seqs.shape
    dev = seqs.device
    span = S - block - loss_start + 1
    anchors = torch.stack([torch.randperm(span, generator=gen)[:n_anchors] for _ in range(b)])
    anchors = (anchors.sort(dim=1).values + loss_start).to(dev)              # [b, N]
    offs = torch.arange(block, device=dev)
    pos = anchors[:, :, None] + offs                                         # [b, N, B]
    tokens = torch.gather(seqs, 1, pos.flatten(1)).view(b, n_anchors, block)
    noise_ids = torch.full_like(tokens, mask_id)
    noise_ids[:, :, 0] = tokens[:, :, 0]
    Q = n_anchors * block
    qa = anchors.repeat_interleave(block, dim=1)                             # [b, Q]
    ctx_vis = torch.arange(S, device=dev)[None, None, :] < qa[:, :, None]    # [b, Q, S]
    qb = torch.arange(Q, device=dev) // block
    blk_vis = (qb[:, None] == qb[None, :]).expand(b, Q, Q)
    mask = torch.cat([ctx_vis, blk_vis], dim=2)[:, None]                     # [b, 1, Q, S+Q]
    return noise_ids.flatten(1), pos.flatten(1), mask, tokens.flatten(1)


def block_loss(hidden, lm_head_w, labels, block, gamma):
    """Position-decayed cross-entropy over slots 1 .. B-1 (slot 0 holds the known token)."""
    b, Q, E = hidden.shape
    logits = (hidden @ lm_head_w.t()).float().view(b, Q // block, block, -1)
    lab = labels.view(b, Q // block, block)
    ce = F.cross_entropy(logits[:, :, 1:].flatten(0, 2), lab[:, :, 1:].flatten(),
                         reduction="none").view(b, Q // block, block - 1)
    k = torch.arange(1, block, device=hidden.device, dtype=torch.float32)
    w = torch.exp(-(k - 1) / gamma)
    loss = (ce * w).sum() / (w.sum() * b * (Q // block))
    acc = (logits[:, :, 1:].argmax(-1) == lab[:, :, 1:]).float().mean(dim=(0, 1))
    return loss, acc


def save(model, cfg, out_dir):
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def init_weights(model, gen_seed=7):
    torch.manual_seed(gen_seed)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=1.0 / math.sqrt(p.shape[1]))
    return model
