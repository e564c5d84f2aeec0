#!/usr/bin/env python3
"""Rebuilds Hugging Face weights from OUR GGUF files, inverting what `dflash convert` did:

    python3 gguf_to_hf.py target  models/dflash-code-25m-q8_0.gguf         OUTDIR --config-dir D
    python3 gguf_to_hf.py drafter models/dflash-code-25m-drafter-q8_0.gguf OUTDIR --config-dir D

target: a Qwen3_5ForCausalLM directory (model.safetensors + config.json and the tokenizer files
found in D) that transformers loads. The inverse of src/convert/convert_qwen35.c's spec table and
src/convert/tensor_transforms.c, tensor by tensor:
  - names: blk.N.attn_qkv.weight -> model.layers.N.linear_attn.in_proj_qkv.weight, ...;
  - the value-head reorder of the DeltaNet tensors (GGUF position j*nk + g holds HF value head
    g*r + j) is undone on the same rows / columns it was applied to;
  - the zero-centred norms had +1 added (GGUF multiplies by w, HF by 1 + w): 1 is subtracted;
  - ssm_a holds -exp(A_log): A_log = log(-ssm_a);
  - ssm_conv1d is [C, K] in the GGUF and [C, 1, K] in HF;
  - the embedding is tied, so no lm_head.weight is written (output.weight is read if present).
drafter: a DFlashDraftModel directory (model.safetensors + D's config.json): plain renames
(src/convert/convert_dflash.c), no value changes.

Q8_0 (34-byte blocks: f16 scale d, then 32 int8 q; value = d * q) is dequantized, so the result
is the model exactly as dflash runs it. F32, F16 and BF16 tensors are read as they are.

The GGUF parser and the tensor plan are plain Python (scripts/train/check_gguf_to_hf.py uses them
on a machine without numpy); the conversion itself needs numpy and nothing else: it writes
safetensors by hand (8-byte little-endian header length, JSON header, raw data)."""
import argparse
import json
import os
import shutil
import struct
import sys

# ---- GGUF reading (src/format/gguf.h gives the layout) -----------------------------------------

GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
               10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING, GGUF_ARRAY = 8, 9
T_F32, T_F16, T_Q8_0, T_BF16 = 0, 1, 8, 30
TYPE_NAMES = {T_F32: "F32", T_F16: "F16", T_Q8_0: "Q8_0", T_BF16: "BF16"}
Q8_0_BLOCK, Q8_0_BYTES = 32, 34


class GGUFError(Exception):
    pass


class Reader:
    """Sequential little-endian reads over a bytes-like object, with the offset in errors."""

    def __init__(self, buf, path):
        self.buf, self.at, self.path = buf, 0, path

    def take(self, n, what):
        if n < 0 or self.at + n > len(self.buf):
            raise GGUFError(f"{self.path}: {what} at offset {self.at} needs {n} bytes, "
                            f"the file has {len(self.buf) - self.at} left")
        b = self.buf[self.at:self.at + n]
        self.at += n
        return b

    def scalar(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.scalar("<Q", what + " length")
        return bytes(self.take(n, what)).decode("utf-8", errors="replace")

    def value(self, vtype, what, depth=0):
        if vtype in GGUF_SCALAR:
            return self.scalar(GGUF_SCALAR[vtype], what)
        if vtype == GGUF_STRING:
            return self.string(what)
        if vtype == GGUF_ARRAY and depth < 4:
            etype = self.scalar("<I", what + " element type")
            n = self.scalar("<Q", what + " element count")
            return [self.value(etype, what, depth + 1) for _ in range(n)]
        raise GGUFError(f"{self.path}: {what} at offset {self.at} has value type {vtype}, "
                        "not one of GGUF's")


def read_gguf(path):
    """(metadata dict, {name: dict(type, ne, offset, nbytes)}, file bytes). ne[0] is the
    contiguous dimension, so the row-major (PyTorch) shape is reversed(ne)."""
    with open(path, "rb") as f:
        buf = f.read()
    r = Reader(buf, path)
    if bytes(r.take(4, "magic")) != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (magic at offset 0 is not 'GGUF')")
    version = r.scalar("<I", "version")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version}, expected 2 or 3")
    n_tensors = r.scalar("<Q", "tensor count")
    n_kv = r.scalar("<Q", "metadata count")
    meta = {}
    for i in range(n_kv):
        key = r.string(f"metadata key {i}")
        meta[key] = r.value(r.scalar("<I", f"type of {key}"), key)
    infos = []
    for i in range(n_tensors):
        name = r.string(f"tensor name {i}")
        n_dims = r.scalar("<I", f"dimension count of {name}")
        if not 1 <= n_dims <= 4:
            raise GGUFError(f"{path}: tensor {name} has {n_dims} dimensions, expected 1 to 4")
        ne = [r.scalar("<Q", f"dimension of {name}") for _ in range(n_dims)]
        ttype = r.scalar("<I", f"type of {name}")
        offset = r.scalar("<Q", f"offset of {name}")
        infos.append((name, ne, ttype, offset))
    align = int(meta.get("general.alignment", 32))
    data_start = (r.at + align - 1) // align * align
    tensors = {}
    for name, ne, ttype, offset in infos:
        n = 1
        for d in ne:
            n *= d
        if ttype == T_Q8_0:
            if ne[0] % Q8_0_BLOCK:
                raise GGUFError(f"{path}: Q8_0 tensor {name} has rows of {ne[0]}, "
                                "not whole blocks of 32")
            nbytes = n // Q8_0_BLOCK * Q8_0_BYTES
        elif ttype in (T_F16, T_BF16):
            nbytes = 2 * n
        elif ttype == T_F32:
            nbytes = 4 * n
        else:
            raise GGUFError(f"{path}: tensor {name} has ggml type {ttype}; this reader takes "
                            "F32, F16, BF16 and Q8_0 (what `dflash convert --type q8_0` writes)")
        start = data_start + offset
        if start + nbytes > len(buf):
            raise GGUFError(f"{path}: tensor {name} ({nbytes} bytes at {start}) runs past the "
                            f"end of the file ({len(buf)} bytes)")
        tensors[name] = {"type": ttype, "ne": ne, "n": n, "offset": start, "nbytes": nbytes}
    return meta, tensors, buf


# ---- the tensor plan: which GGUF tensor becomes which HF tensor, and how ------------------------

def perm_src(p, i):
    """src/convert/tensor_transforms.c's df_conv_perm_src: the source index that GGUF index i
    was gathered from. p = (start, nk, r, hd); nk == 0 is no reorder."""
    start, nk, r, hd = p
    if nk <= 0 or r <= 1 or i < start:
        return i
    rel = i - start
    if rel >= nk * r * hd:
        return i
    q, d = divmod(rel, hd)
    g, j = q % nk, q // nk
    return start + (g * r + j) * hd + d


NO_PERM = (0, 0, 1, 1)


def target_plan(meta):
    """[(hf_name, gguf_name, hf_shape, op, row_perm, col_perm)] for a qwen35 GGUF; op is None,
    'minus_one' (undo +1) or 'log_neg' (undo -exp)."""
    a = meta.get("general.architecture")
    if a != "qwen35":
        raise GGUFError(f"general.architecture is {a!r}, expected 'qwen35'")
    def g(key):
        if "qwen35." + key not in meta:
            raise GGUFError(f"the GGUF has no metadata key qwen35.{key}")
        return int(meta["qwen35." + key])

    n_layer, H, F = g("block_count"), g("embedding_length"), g("feed_forward_length")
    n_head, n_kv, D = g("attention.head_count"), g("attention.head_count_kv"), g("attention.key_length")
    d_k, n_k, n_v = g("ssm.state_size"), g("ssm.group_count"), g("ssm.time_step_rank")
    d_v = g("ssm.inner_size") // n_v
    K = g("ssm.conv_kernel")
    interval = g("full_attention_interval")
    Kd, Vd = n_k * d_k, n_v * d_v
    C = 2 * Kd + Vd
    nk, R = (n_k if n_v != n_k else 0), n_v // n_k
    v_rows, heads_dv, heads_1 = (2 * Kd, nk, R, d_v), (0, nk, R, d_v), (0, nk, R, 1)
    plan = []

    def add(hf, gg, shape, op=None, rows=NO_PERM, cols=NO_PERM):
        plan.append((hf, gg, tuple(shape), op, rows, cols))

    for il in range(n_layer):
        p, b = f"model.layers.{il}.", f"blk.{il}."
        add(p + "input_layernorm.weight", b + "attn_norm.weight", [H], "minus_one")
        if (il + 1) % interval == 0:
            add(p + "self_attn.q_proj.weight", b + "attn_q.weight", [2 * n_head * D, H])
            add(p + "self_attn.k_proj.weight", b + "attn_k.weight", [n_kv * D, H])
            add(p + "self_attn.v_proj.weight", b + "attn_v.weight", [n_kv * D, H])
            add(p + "self_attn.o_proj.weight", b + "attn_output.weight", [H, n_head * D])
            add(p + "self_attn.q_norm.weight", b + "attn_q_norm.weight", [D], "minus_one")
            add(p + "self_attn.k_norm.weight", b + "attn_k_norm.weight", [D], "minus_one")
        else:
            la = p + "linear_attn."
            add(la + "in_proj_qkv.weight", b + "attn_qkv.weight", [C, H], rows=v_rows)
            add(la + "in_proj_z.weight", b + "attn_gate.weight", [Vd, H], rows=heads_dv)
            add(la + "in_proj_b.weight", b + "ssm_beta.weight", [n_v, H], rows=heads_1)
            add(la + "in_proj_a.weight", b + "ssm_alpha.weight", [n_v, H], rows=heads_1)
            add(la + "A_log", b + "ssm_a", [n_v], "log_neg", cols=heads_1)
            add(la + "dt_bias", b + "ssm_dt.bias", [n_v], cols=heads_1)
            add(la + "conv1d.weight", b + "ssm_conv1d.weight", [C, 1, K], rows=v_rows)
            add(la + "norm.weight", b + "ssm_norm.weight", [d_v])
            add(la + "out_proj.weight", b + "ssm_out.weight", [H, Vd], cols=heads_dv)
        add(p + "post_attention_layernorm.weight", b + "post_attention_norm.weight", [H],
            "minus_one")
        add(p + "mlp.gate_proj.weight", b + "ffn_gate.weight", [F, H])
        add(p + "mlp.up_proj.weight", b + "ffn_up.weight", [F, H])
        add(p + "mlp.down_proj.weight", b + "ffn_down.weight", [H, F])
    return plan


def target_plan_ends(meta, tensors):
    n_vocab, H = None, int(meta["qwen35.embedding_length"])
    if "token_embd.weight" in tensors:
        n_vocab = tensors["token_embd.weight"]["ne"][1]
    plan = [("model.embed_tokens.weight", "token_embd.weight", (n_vocab, H), None, NO_PERM, NO_PERM),
            ("model.norm.weight", "output_norm.weight", (H,), "minus_one", NO_PERM, NO_PERM)]
    if "output.weight" in tensors:   # untied checkpoints only
        plan.append(("lm_head.weight", "output.weight", (n_vocab, H), None, NO_PERM, NO_PERM))
    return plan


DRAFTER_LAYER = [("attn_k.weight", "self_attn.k_proj.weight"),
                 ("attn_k_norm.weight", "self_attn.k_norm.weight"),
                 ("attn_norm.weight", "input_layernorm.weight"),
                 ("attn_output.weight", "self_attn.o_proj.weight"),
                 ("attn_q.weight", "self_attn.q_proj.weight"),
                 ("attn_q_norm.weight", "self_attn.q_norm.weight"),
                 ("attn_v.weight", "self_attn.v_proj.weight"),
                 ("ffn_down.weight", "mlp.down_proj.weight"),
                 ("ffn_gate.weight", "mlp.gate_proj.weight"),
                 ("ffn_norm.weight", "post_attention_layernorm.weight"),
                 ("ffn_up.weight", "mlp.up_proj.weight")]


def drafter_plan(meta, tensors):
    a = meta.get("general.architecture")
    if a != "qwen35-dflash-draft":
        raise GGUFError(f"general.architecture is {a!r}, expected 'qwen35-dflash-draft'")
    n_layer = int(meta[a + ".block_count"])
    plan = [("fc.weight", "dflash.fc.weight"), ("hidden_norm.weight", "dflash.hidden_norm.weight"),
            ("norm.weight", "output_norm.weight")]
    for il in range(n_layer):
        plan += [(f"layers.{il}.{hf}", f"blk.{il}.{gg}") for gg, hf in DRAFTER_LAYER]
    return [(hf, gg, tuple(reversed(tensors[gg]["ne"])) if gg in tensors else None, None,
             NO_PERM, NO_PERM) for hf, gg in plan]


def full_plan(kind, meta, tensors):
    if kind == "target":
        plan = target_plan_ends(meta, tensors)[:1] + target_plan(meta) + \
            target_plan_ends(meta, tensors)[1:]
    else:
        plan = drafter_plan(meta, tensors)
    used = set()
    for hf, gg, shape, _, _, _ in plan:
        if gg not in tensors:
            raise GGUFError(f"the GGUF has no tensor {gg} (it would become {hf})")
        got = tuple(reversed(tensors[gg]["ne"]))
        # conv1d's middle 1 was squeezed by the converter: [C, 1, K] is [C, K] in the GGUF.
        flat = (shape[0], shape[2]) if hf.endswith("conv1d.weight") else shape
        if got != flat:
            raise GGUFError(f"tensor {gg} has shape {list(got)}, the metadata implies {list(flat)}")
        used.add(gg)
    extra = sorted(set(tensors) - used)
    if extra:
        raise GGUFError(f"tensors the plan does not know (would be dropped): {extra[:5]}")
    return plan


# ---- the conversion (numpy) --------------------------------------------------------------------

def dequant(buf, t):
    """The tensor as float32 numpy, row-major shape reversed(ne)."""
    import numpy as np
    raw = np.frombuffer(buf, dtype=np.uint8, count=t["nbytes"], offset=t["offset"])
    if t["type"] == T_F32:
        x = raw.view("<f4").astype(np.float32)
    elif t["type"] == T_F16:
        x = raw.view("<f2").astype(np.float32)
    elif t["type"] == T_BF16:
        x = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        blocks = raw.reshape(-1, Q8_0_BYTES)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)          # [nb, 1]
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)        # [nb, 32]
        x = (d * q).reshape(-1)
    return x.reshape(tuple(reversed(t["ne"])))


def perm_index(p, n):
    return [perm_src(p, i) for i in range(n)]


def invert(x, op, rows, cols, shape):
    """HF tensor from the GGUF one: undo the op, then put rows / columns back where the
    converter took them from (GGUF index i came from HF index perm_src(i))."""
    import numpy as np
    x = np.array(x, dtype=np.float32)
    if op == "minus_one":
        x = x - np.float32(1.0)
    elif op == "log_neg":
        if not (x < 0).all():
            raise GGUFError("ssm_a has values >= 0: it cannot be -exp(A_log)")
        x = np.log(-x.astype(np.float64)).astype(np.float32)
    if rows[1] > 0:
        out = np.empty_like(x)
        out[perm_index(rows, x.shape[0])] = x
        x = out
    if cols[1] > 0:
        out = np.empty_like(x)
        out[..., perm_index(cols, x.shape[-1])] = x
        x = out
    return x.reshape(shape)


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns, round to nearest even (what torch's .to(bfloat16) does)."""
    import numpy as np
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, named, dtype):
    header, chunks, at = {}, [], 0
    for name, x in named:
        data = (to_bf16_bits(x) if dtype == "bf16" else x.astype("<f4")).tobytes()
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(x.shape),
                        "data_offsets": [at, at + len(data)]}
        chunks.append(data)
        at += len(data)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)


CONFIG_FILES = {"target": ["config.json", "generation_config.json", "tokenizer.json",
                           "tokenizer_config.json"],
                "drafter": ["config.json"]}


def convert(kind, gguf_path, out_dir, config_dir, dtype="f32"):
    """Writes out_dir/model.safetensors (+ the config files found in config_dir); returns the
    number of parameters."""
    meta, tensors, buf = read_gguf(gguf_path)
    plan = full_plan(kind, meta, tensors)
    os.makedirs(out_dir, exist_ok=True)
    named = [(hf, invert(dequant(buf, tensors[gg]), op, rows, cols, shape))
             for hf, gg, shape, op, rows, cols in plan]
    if kind == "target":
        cfg = json.load(open(os.path.join(config_dir, "config.json")))
        H = int(meta["qwen35.embedding_length"])
        if cfg.get("hidden_size") != H or cfg.get("num_hidden_layers") != int(meta["qwen35.block_count"]):
            raise GGUFError(f"{config_dir}/config.json describes another model than {gguf_path}")
        if "lm_head.weight" not in dict(named) and not cfg.get("tie_word_embeddings"):
            raise GGUFError("the GGUF has no output.weight but config.json does not tie embeddings")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), named, dtype)
    for name in CONFIG_FILES[kind]:
        src = os.path.join(config_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(out_dir, name))
        elif name == "config.json":
            raise GGUFError(f"{config_dir} has no config.json")
    return sum(x.size for _, x in named)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["target", "drafter"])
    ap.add_argument("gguf")
    ap.add_argument("out_dir")
    ap.add_argument("--config-dir", required=True,
                    help="holds config.json (and for the target the tokenizer files)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    try:
        n = convert(a.kind, a.gguf, a.out_dir, a.config_dir, a.dtype)
    except (GGUFError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.out_dir}: {n / 1e6:.2f}M parameters ({a.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
