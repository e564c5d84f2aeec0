#!/usr/bin/env python3
"""Reference fixtures for the DFlash drafter, computed by PyTorch on top of transformers' own
Qwen3 modules (Qwen3Attention's projections and q/k norms, Qwen3MLP, Qwen3RMSNorm,
Qwen3RotaryEmbedding, rotate_half, repeat_kv), following the published semantics of z-lab's
DFlashDraftModel (dflash/model.py; docs/DFLASH_DRAFTER.md section 1):

  target_hidden = hidden_norm(fc(context features))            no input norm on the context
  per layer:  h = input_layernorm(x)
              q = rope(q_norm(q_proj(h)))                      block positions c .. c+B-1
              k = rope(k_norm(k_proj([target_hidden ; h])))    context positions 0 .. c-1
              v = v_proj([target_hidden ; h])
              full layers: every key; sliding layers: causal in the block and p - j < window
              x += o_proj(softmax(q k^T / sqrt(head_dim)) v)
              x += mlp(post_attention_layernorm(x))
  logits = target lm_head(norm(x))[1:]                         rows 1 .. B-1 of the block

Each step is computed from scratch over the whole context (no cache), in float64 on the CPU,
so the fixture does not depend on any caching scheme. The drafter uses the embedding table
and LM head of the target fixture tests/fixtures/qwen35/tiny_a (hidden 64, vocabulary 384,
4 layers), so the C test can load that target through `dflash convert` and our loader.

For each drafter it writes OUTDIR/<name>/:
  config.json, model.safetensors   a z-lab style checkpoint (float32 weights, z-lab names)
  features.f32                     little-endian float32 [n_rows, n_capture * 64]: random
                                   "target hidden states", concatenated in target_layer_ids order
  logits_<k>.f32                   float32 [block - 1, 384]: case k's drafter logits
  reference.json                   target, feature shape, per case: context length, bonus
                                   token, block size, logits file, argmax, top-1/top-2 gaps
and OUTDIR/README.md. Copy OUTDIR/* to tests/fixtures/dflash/.

    python3 scripts/dflash_reference.py OUTDIR           (about ten seconds; no network)
"""
import array
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers.models.qwen3.configuration_qwen3 import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import (
    Qwen3Attention,
    Qwen3MLP,
    Qwen3RMSNorm,
    Qwen3RotaryEmbedding,
    repeat_kv,
    rotate_half,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "tiny_a"

DRAFTERS = {
    # two full-attention layers, GQA 4/2, rope_theta under rope_parameters (Qwen3.6 style),
    # DFlash fields under dflash_config
    "full2": dict(layer_types=["full_attention", "full_attention"], heads=4, kv_heads=2,
                  head_dim=16, ff=128, block=16, ids=[0, 1, 2], mask=383, theta=1e7,
                  rope_nested=True, window=None, seed=11,
                  cases=[(1, 16), (9, 16), (30, 16), (30, 7), (57, 16)]),
    # a sliding layer (window 20, causal in the block) then a full layer; MQA; capture ids
    # not sorted; rope_theta and block_size at the top level (older files)
    "swa2": dict(layer_types=["sliding_attention", "full_attention"], heads=2, kv_heads=1,
                 head_dim=32, ff=96, block=16, ids=[2, 0], mask=7, theta=1e6,
                 rope_nested=False, window=20, seed=12,
                 cases=[(3, 16), (17, 16), (40, 16), (40, 5), (64, 16)]),
}

CHECKPOINT_NAMES = {"fc.weight", "hidden_norm.weight", "norm.weight"} | {
    f"layers.{{}}.{n}" for n in (
        "input_layernorm.weight", "post_attention_layernorm.weight",
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")}


class DraftLayer(torch.nn.Module):
    def __init__(self, cfg, idx):
        super().__init__()
        self.self_attn = Qwen3Attention(cfg, idx)  # q/k/v/o projections and q/k norms
        self.mlp = Qwen3MLP(cfg)
        self.input_layernorm = Qwen3RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = Qwen3RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)


class Drafter(torch.nn.Module):
    def __init__(self, cfg, n_capture):
        super().__init__()
        self.cfg = cfg
        self.layers = torch.nn.ModuleList(DraftLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.fc = torch.nn.Linear(n_capture * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.hidden_norm = Qwen3RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.norm = Qwen3RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = Qwen3RotaryEmbedding(cfg)

    def forward(self, feats, noise, layer_types, window):
        """feats [L, n_capture*E] context features, noise [n, E] block embeddings."""
        L, n = feats.shape[0], noise.shape[0]
        T, D = L + n, self.cfg.head_dim
        ctx = self.hidden_norm(self.fc(feats))[None]          # [1, L, E]
        x = noise[None]                                       # [1, n, E]
        cos, sin = self.rotary_emb(x, torch.arange(T)[None])  # [1, T, D]
        cos, sin = cos[:, None], sin[:, None]
        qpos = torch.arange(L, T)[:, None]
        kpos = torch.arange(T)[None, :]
        for layer, kind in zip(self.layers, layer_types):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            both = torch.cat([ctx, h], dim=1)
            q = a.q_norm(a.q_proj(h).view(1, n, -1, D)).transpose(1, 2)
            k = a.k_norm(a.k_proj(both).view(1, T, -1, D)).transpose(1, 2)
            v = a.v_proj(both).view(1, T, -1, D).transpose(1, 2)
            q = q * cos[..., L:, :] + rotate_half(q) * sin[..., L:, :]
            k = k * cos + rotate_half(k) * sin
            groups = q.shape[1] // k.shape[1]
            k, v = repeat_kv(k, groups), repeat_kv(v, groups)
            sliding = kind == "sliding_attention"
            visible = torch.ones(n, T, dtype=torch.bool)
            if sliding:  # causal inside the block, window over everything
                visible &= kpos <= qpos
                visible &= qpos - kpos < window
            scores = (q @ k.transpose(-1, -2)) * D ** -0.5
            scores = scores.masked_fill(~visible, float("-inf"))
            out = torch.softmax(scores, dim=-1) @ v             # [1, H, n, D]
            x = x + a.o_proj(out.transpose(1, 2).reshape(1, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x)[0]


def write_f32(tensor, path):
    """Little-endian float32, without needing numpy."""
    assert sys.byteorder == "little"
    with open(path, "wb") as f:
        array.array("f", tensor.float().flatten().tolist()).tofile(f)


def load_target():
    path = os.path.join(REPO, "tests", "fixtures", "qwen35", TARGET, "model.safetensors")
    sd = load_file(path)
    emb = [v for k, v in sd.items() if k.endswith("embed_tokens.weight")]
    head = [v for k, v in sd.items() if k.endswith("lm_head.weight")]
    assert len(emb) == 1 and len(head) == 1, "tiny_a must be untied with one embedding table"
    cfg = json.load(open(os.path.join(os.path.dirname(path), "config.json")))
    return emb[0].double(), head[0].double(), cfg


def build(name, spec, tcfg, outdir):
    g = torch.Generator().manual_seed(spec["seed"])
    E, n_layer = tcfg["hidden_size"], len(spec["layer_types"])
    sliding = any(t == "sliding_attention" for t in spec["layer_types"])
    cfg = Qwen3Config(
        vocab_size=tcfg["vocab_size"], hidden_size=E, intermediate_size=spec["ff"],
        num_hidden_layers=n_layer, num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"], head_dim=spec["head_dim"], rms_norm_eps=1e-6,
        max_position_embeddings=4096, layer_types=spec["layer_types"],
        use_sliding_window=sliding, sliding_window=spec["window"],
        rope_parameters={"rope_type": "default", "rope_theta": spec["theta"]},
        attention_bias=False, tie_word_embeddings=False)
    model = Drafter(cfg, len(spec["ids"])).float()
    # The rotary table must come from this theta (an older transformers reading rope_theta
    # instead of rope_parameters would silently use its default).
    inv = model.rotary_emb.inv_freq
    want = spec["theta"] ** (-2.0 / spec["head_dim"])
    assert abs(float(inv[1]) / want - 1) < 1e-5, (float(inv[1]), want)
    with torch.no_grad():  # weights large enough that attention is not uniform
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif "q_norm" in pname or "k_norm" in pname:
                p.copy_(1.5 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))

    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "rotary" not in k}
    expected = {n.format(i) if "{}" in n else n for n in CHECKPOINT_NAMES for i in range(n_layer)}
    assert set(state) == expected, sorted(set(state) ^ expected)
    save_file(state, os.path.join(d, "model.safetensors"))

    config = {
        "architectures": ["DFlashDraftModel"], "model_type": "qwen3", "dtype": "float32",
        "hidden_size": E, "num_hidden_layers": n_layer, "intermediate_size": spec["ff"],
        "num_attention_heads": spec["heads"], "num_key_value_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"], "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "max_position_embeddings": 4096,
        "vocab_size": tcfg["vocab_size"], "tie_word_embeddings": False,
        "num_target_layers": tcfg["num_hidden_layers"], "layer_types": spec["layer_types"],
        "use_sliding_window": sliding, "sliding_window": spec["window"],
        "max_window_layers": n_layer,
        "dflash_config": {"mask_token_id": spec["mask"], "target_layer_ids": spec["ids"]},
    }
    if spec["rope_nested"]:
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": spec["theta"]}
        config["dflash_config"]["block_size"] = spec["block"]
    else:
        config["rope_theta"] = spec["theta"]
        config["block_size"] = spec["block"]
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    return model, d


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    torch.set_grad_enabled(False)
    emb, head, tcfg = load_target()
    V, E = head.shape
    readme = ["# DFlash drafter reference fixtures", "",
              f"Made by `scripts/dflash_reference.py` (torch {torch.__version__}, "
              f"transformers {__import__('transformers').__version__}) for the target "
              f"`tests/fixtures/qwen35/{TARGET}`. Nothing here was produced by dflash.", ""]
    for name, spec in DRAFTERS.items():
        model, d = build(name, spec, tcfg, outdir)
        model = model.double()
        n_rows = max(c for c, _ in spec["cases"])
        g = torch.Generator().manual_seed(1000 + spec["seed"])
        feats = (2.0 * torch.randn(n_rows, len(spec["ids"]) * E, generator=g)).float()
        write_f32(feats, os.path.join(d, "features.f32"))
        cases = []
        for k, (ctx, block) in enumerate(spec["cases"]):
            bonus = int(torch.randint(0, V, (1,), generator=g))
            tokens = torch.tensor([bonus] + [spec["mask"]] * (block - 1))
            hidden = model(feats[:ctx].double(), emb[tokens], spec["layer_types"], spec["window"])
            logits = hidden[1:] @ head.T                       # [block - 1, V]
            top2 = torch.topk(logits, 2, dim=-1).values
            fname = f"logits_{k}.f32"
            write_f32(logits, os.path.join(d, fname))
            cases.append({"context": ctx, "bonus": bonus, "block": block, "logits": fname,
                          "shape": [block - 1, V], "argmax": logits.argmax(-1).tolist(),
                          "gap": (top2[:, 0] - top2[:, 1]).tolist()})
        ref = {"target": TARGET, "n_vocab": V, "n_embd": E, "features": "features.f32",
               "feature_shape": [n_rows, len(spec["ids"]) * E],
               "target_layer_ids": spec["ids"], "mask_token_id": spec["mask"],
               "cases": cases}
        json.dump(ref, open(os.path.join(d, "reference.json"), "w"), indent=1)
        readme.append(f"- `{name}`: {spec['layer_types']}, heads {spec['heads']}/{spec['kv_heads']}"
                      f" x {spec['head_dim']}, block {spec['block']}, capture {spec['ids']}, "
                      f"window {spec['window']}, rope_theta {spec['theta']:g} "
                      f"({'rope_parameters' if spec['rope_nested'] else 'top level'}); "
                      f"{len(cases)} cases")
        print(f"{name}: {len(cases)} cases, min gap "
              f"{min(min(c['gap']) for c in cases):.4f}", flush=True)
    open(os.path.join(outdir, "README.md"), "w").write("\n".join(readme) + "\n")


if __name__ == "__main__":
    main()
