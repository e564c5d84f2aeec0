#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/fuzz_safetensors.c and tests/fuzz/fuzz_config.c.

Standard library only, and independent of the C reader: the files follow the safetensors
layout (8-byte little-endian header length, JSON header padded with spaces to a multiple of
8 as the reference writer does, then the data) and the fuzz_config input layout (first line
a field path, the rest JSON). Deterministic: rerunning gives the same bytes.

    python3 scripts/make_fuzz_seeds_safetensors.py
"""
import json
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")


def safetensors(rng, tensors, meta=None):
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, elem_size in tensors:
        n = 1
        for s in shape:
            n *= s
        nbytes = n * elem_size
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes(rng.randrange(256) for _ in range(nbytes))
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    rng = random.Random(1)
    files = {
        "one_f32": safetensors(rng, [("w", "F32", [2, 3], 4)]),
        "mixed_dtypes": safetensors(rng, [
            ("a", "BF16", [4], 2), ("b", "F16", [2, 2], 2), ("c", "I64", [2], 8), ("d", "U8", [3], 1),
            ("e", "BOOL", [2], 1), ("f", "F8_E4M3", [1], 1), ("g", "I32", [1], 4), ("h", "F64", [1], 8),
            ("i", "I16", [2], 2), ("j", "I8", [1], 1)], {"format": "pt"}),
        "scalar_and_empty": safetensors(rng, [("s", "F32", [], 4), ("z", "BF16", [0, 5], 2)]),
        "empty_header": safetensors(rng, []),
        "model_like": safetensors(rng, [
            ("model.embed_tokens.weight", "BF16", [8, 4], 2),
            ("model.layers.0.input_layernorm.weight", "F32", [4], 4),
            ("lm_head.weight", "BF16", [8, 4], 2)], {"format": "pt", "note": "x"}),
    }
    os.makedirs(os.path.join(ROOT, "fuzz_safetensors"), exist_ok=True)
    for name, blob in files.items():
        with open(os.path.join(ROOT, "fuzz_safetensors", name + ".safetensors"), "wb") as f:
            f.write(blob)

    configs = {
        "qwen35.json": "text_config.hidden_size\n" + json.dumps({
            "architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
            "tie_word_embeddings": False, "rope_scaling": None,
            "text_config": {"hidden_size": 1024, "num_hidden_layers": 4, "rms_norm_eps": 1e-6,
                            "layer_types": ["linear_attention"] * 3 + ["full_attention"],
                            "rope_parameters": {"rope_theta": 10000000, "mrope_section": [11, 11, 10]}}},
            indent=2),
        "arrays.json": "a.b\n" + json.dumps({"a": {"b": [1, 2.5, "x", True, None, [3], {"c": 1}]}, "0": [0]}),
        "nopath.json": json.dumps({"x": {"1": {"y": "z"}}, "a": 7}),
    }
    os.makedirs(os.path.join(ROOT, "fuzz_config"), exist_ok=True)
    for name, text in configs.items():
        with open(os.path.join(ROOT, "fuzz_config", name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
