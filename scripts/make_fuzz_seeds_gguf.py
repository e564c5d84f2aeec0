#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_gguf (tests/fuzz/corpus/fuzz_gguf/): a handful of small,
valid GGUF files covering every value type, arrays of strings, nested arrays, several tensor
types, a custom alignment and GGUF v2. The encoder here is independent of src/format (Python's
struct, from the GGUF spec), so the seeds also cross-check our reader. The files are committed;
rerun this only to change them:  python3 scripts/make_fuzz_seeds_gguf.py"""
import os
import struct

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types: id -> (block size, bytes per block)
GGML = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q8_0": (8, 32, 34),
        "q4_K": (12, 256, 144), "i32": (26, 1, 4), "bf16": (30, 1, 2)}


def gstr(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    """Encodes v of type t; arrays are (elem_type, [values])."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors=(), version=3, alignment=32, seed=1):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gstr(key) + struct.pack("<I", t) + value(t, v)
    offset, datas = 0, []
    for name, tname, ne in tensors:
        tid, blk, tsize = GGML[tname]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // blk * tsize
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", tid, offset)
        data = bytes((seed * 31 + i * 7) & 0xFF for i in range(nbytes))
        datas.append(data + bytes(-nbytes % alignment))
        offset += len(datas[-1])
    out += bytes(-len(out) % alignment)
    return out + b"".join(datas)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus", "fuzz_gguf")
    os.makedirs(root, exist_ok=True)
    seeds = {
        "empty_v3.gguf": gguf([]),
        "scalars.gguf": gguf([
            ("general.architecture", STR, "qwen35"), ("a.u8", U8, 200), ("a.i8", I8, -100),
            ("a.u16", U16, 60000), ("a.i16", I16, -30000), ("a.u32", U32, 4000000000),
            ("a.i32", I32, -2000000000), ("a.f32", F32, 1e-6), ("a.bool", BOOL, True),
            ("a.u64", U64, 2**63 + 5), ("a.i64", I64, -(2**62)), ("a.f64", F64, 1e7),
        ]),
        "arrays.gguf": gguf([
            ("tokenizer.ggml.tokens", ARR, (STR, ["<|endoftext|>", "\u0120the", "", "\u4e2d"])),
            ("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.5, 2.25, -3.0])),
            ("tokenizer.ggml.token_type", ARR, (I32, [3, 1, 1, 1])),
            ("qwen35.rope.dimension_sections", ARR, (I32, [11, 11, 10, 0])),
            ("x.bools", ARR, (BOOL, [True, False])),
            ("x.empty", ARR, (U64, [])),
            ("x.nested", ARR, (ARR, [(U8, [1, 2, 3]), (STR, ["a", "bc"]), (ARR, [(I16, [-1]), (F64, [])])])),
        ]),
        "tensors.gguf": gguf([("general.architecture", STR, "qwen35")], [
            ("token_embd.weight", "f32", [4, 3]), ("blk.0.attn_q.weight", "q8_0", [32, 2]),
            ("blk.0.ssm_a", "f16", [5]), ("blk.0.ffn_down.weight", "q4_0", [32, 1, 1, 2]),
        ], seed=2),
        "align64_v2.gguf": gguf([("general.alignment", U32, 64), ("general.name", STR, "v2")],
                                [("w", "bf16", [3, 2]), ("ids", "i32", [7])], version=2, alignment=64, seed=3),
        "q4k.gguf": gguf([("general.alignment", U32, 16)], [("blk.0.ffn_up.weight", "q4_K", [256])],
                         alignment=16, seed=4),
    }
    for name, data in seeds.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
