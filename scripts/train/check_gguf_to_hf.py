#!/usr/bin/env python3
"""Checks gguf_to_hf.py's inverse on a machine without numpy: rebuilds every tensor of the
target GGUF in plain Python (its parser and tensor plan, a plain Q8_0 dequantizer) and compares
it with the HF checkpoint the GGUF was converted from, within the quantization error.

    python3 scripts/train/check_gguf_to_hf.py models/dflash-code-25m-q8_0.gguf .train

The HF shards are read by hand (safetensors: u64 header length, JSON header, raw data). A Q8_0
element may differ from the source by half a quantization step (d / 2, d the block's f16
scale) plus the scale's own rounding; F32 tensors (norms, A_log, conv1d) by a few ulps of the
+1 / -exp round trip. Exit status 1 on any tensor outside that."""
import array
import glob
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_to_hf import (Q8_0_BYTES, T_BF16, T_F16, T_F32, T_Q8_0, full_plan,  # noqa: E402
                        perm_src, read_gguf)


def load_hf(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            base = 8 + n
            for name, h in header.items():
                if name == "__metadata__":
                    continue
                out[name] = (path, base, h)
    return out


def hf_values(entry):
    path, base, h = entry
    a, b = h["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + a)
        raw = f.read(b - a)
    if h["dtype"] == "BF16":
        bits = array.array("H", raw)
        return array.array("f", array.array("I", (x << 16 for x in bits)).tobytes()).tolist()
    if h["dtype"] == "F32":
        return array.array("f", raw).tolist()
    raise SystemExit(f"{path}: {h['dtype']} tensors are not handled by this check")


def gguf_values(buf, t):
    """(values, per-element tolerance) in GGUF order, row-major."""
    off, n = t["offset"], t["n"]
    if t["type"] == T_F32:
        v = array.array("f", buf[off:off + 4 * n]).tolist()
        return v, [4e-7 * max(1.0, abs(x)) for x in v]
    if t["type"] in (T_F16, T_BF16):
        bits = array.array("H", buf[off:off + 2 * n])
        if t["type"] == T_F16:
            v = [struct.unpack("<e", struct.pack("<H", x))[0] for x in bits]
        else:
            v = array.array("f", array.array("I", (x << 16 for x in bits)).tobytes()).tolist()
        return v, [abs(x) * 2 ** -8 + 1e-7 for x in v]
    assert t["type"] == T_Q8_0
    vals, tol = [], []
    for b in range(n // 32):
        blk = struct.unpack_from("<e32b", buf, off + b * Q8_0_BYTES)
        d = blk[0]
        vals.extend(d * q for q in blk[1:])
        # half a step, plus the f16 rounding of d (2^-11 relative) times the largest |q|
        tol.extend([abs(d) * (0.5 + 127 * 2 ** -11) + 1e-9] * 32)
    return vals, tol


def main():
    gguf_path, hf_dir = sys.argv[1], sys.argv[2]
    meta, tensors, buf = read_gguf(gguf_path)
    plan = full_plan("target", meta, tensors)
    hf = load_hf(hf_dir)
    missing = sorted(set(hf) - {p[0] for p in plan} - {"lm_head.weight"})
    bad = 0
    if missing:
        print(f"HF tensors the plan does not rebuild: {missing}")
        bad += 1
    for name, gg, shape, op, rows, cols in plan:
        t = tensors[gg]
        v, tol = gguf_values(buf, t)
        if op == "minus_one":
            v = [x - 1.0 for x in v]
        elif op == "log_neg":
            tol = [1e-6] * len(v)
            v = [math.log(-x) for x in v]
        ncols = t["ne"][0]
        nrows = len(v) // ncols
        rebuilt, rtol = [0.0] * len(v), [0.0] * len(v)
        for i in range(nrows):
            hi = perm_src(rows, i)
            for j in range(ncols):
                hj = perm_src(cols, j)
                rebuilt[hi * ncols + hj] = v[i * ncols + j]
                rtol[hi * ncols + hj] = tol[i * ncols + j]
        if name not in hf:
            print(f"{name}: not in the HF checkpoint")
            bad += 1
            continue
        if list(shape) != hf[name][2]["shape"]:
            print(f"{name}: shape {list(shape)} vs HF {hf[name][2]['shape']}")
            bad += 1
            continue
        ref = hf_values(hf[name])
        worst, n_out = 0.0, 0
        for a, b, e in zip(rebuilt, ref, rtol):
            d = abs(a - b)
            worst = max(worst, d / e if e else (0 if d == 0 else math.inf))
            n_out += d > e
        status = "ok" if n_out == 0 else "OUT OF TOLERANCE"
        if n_out or name.endswith(("norm.weight", "A_log", "dt_bias", "conv1d.weight",
                                   "in_proj_qkv.weight")) and ".layers.0." in name:
            print(f"{name:55s} {t['type']:2d} {len(v):8d} worst {worst:.3f} of tolerance, "
                  f"{n_out} outside: {status}")
        bad += n_out > 0
    print(f"{len(plan)} tensors checked against {hf_dir}: {'all within tolerance' if not bad else f'{bad} failed'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
