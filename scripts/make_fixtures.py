#!/usr/bin/env python3
"""Reference fixtures for the qwen35 target, produced by an implementation nobody here wrote:
transformers' Qwen3_5ForCausalLM (its pure-PyTorch GDN fallback), run in float64 on the CPU.

For each tiny random configuration it writes tests/fixtures/qwen35/<name>/:
  config.json, model.safetensors   the HF checkpoint (save_pretrained, float32 weights)
  tokenizer.json                   a small byte-level BPE trained with `tokenizers`
  reference.json                   prompts and, per prompt, the full token sequence
                                   (prompt + 32 greedy tokens) and metadata
  logits_<i>.f32                   little-endian float32 [len(sequence) - 1, vocab]: the
                                   logits after each position (row t predicts token t+1)

Greedy tokens come from step-by-step full forwards; the stored logits come from one forward
over the final sequence (the model is causal, so row t depends only on tokens 0..t).
Seeds are searched until every greedy step has a top-1/top-2 logit gap >= MIN_GAP (logits have
a scale of about 6), so that a q8_0 model must reproduce the same tokens: the fixture is well
conditioned by construction, and a test that compares greedy tokens is not a coin toss.

Run on the GPU machine (it has torch + transformers):
    python3 scripts/make_fixtures.py OUTDIR [CONFIG_NAME ...]
"""
import json
import os
import sys

import torch

N_GEN = 32
MIN_GAP = 0.08

CONFIGS = {
    # 4 layers, 3 linear + 1 full, untied, equal key/value head counts.
    "tiny_a": dict(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                   linear_num_key_heads=2, linear_num_value_heads=2,
                   linear_key_head_dim=16, linear_value_head_dim=24,
                   layer_types=["linear_attention"] * 3 + ["full_attention"],
                   tie_word_embeddings=False),
    # 8 layers, every 4th full, value heads > key heads (exercises the head reordering), tied.
    "tiny_vh": dict(vocab_size=320, hidden_size=96, intermediate_size=192, num_hidden_layers=8,
                    num_attention_heads=6, num_key_value_heads=1, head_dim=16,
                    linear_num_key_heads=2, linear_num_value_heads=6,
                    linear_key_head_dim=16, linear_value_head_dim=16,
                    layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
                    tie_word_embeddings=True),
    # 6 layers alternating (interval 2), one key head, three value heads, wide heads.
    "tiny_alt": dict(vocab_size=352, hidden_size=128, intermediate_size=224, num_hidden_layers=6,
                     num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                     linear_num_key_heads=1, linear_num_value_heads=3,
                     linear_key_head_dim=32, linear_value_head_dim=32,
                     layer_types=["linear_attention", "full_attention"] * 3,
                     tie_word_embeddings=False),
}

PROMPT_TEXTS = [
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "The quick brown fox jumps over the lazy dog. ",
    "for i in range(10):\n    print(i * i)",
]


# The split regex of Qwen3.5's tokenizer.json (llama.cpp calls it "qwen35"): Qwen2's with
# combining marks (\p{M}) kept with letters.
QWEN35_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def make_tokenizer(vocab_size, outdir):
    """A byte-level BPE laid out like Qwen's: NFC, Split(regex, isolated) + ByteLevel."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(specials), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [open(torch.__file__).read(), open(json.__file__).read()] + PROMPT_TEXTS * 4
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(specials)
    tok.save(os.path.join(outdir, "tokenizer.json"))
    with open(os.path.join(outdir, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>"}, f, indent=1)
    return tok


def build_model(spec, seed):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig
    cfg = Qwen3_5TextConfig(**spec, rms_norm_eps=1e-6, linear_conv_kernel_dim=4,
                            max_position_embeddings=4096,
                            rope_parameters={"rope_type": "default", "rope_theta": 1.0e6,
                                             "partial_rotary_factor": 0.25})
    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(cfg).eval()
    # Default init (std 0.02) gives near-flat logits. Weights are drawn wider, but each layer
    # is kept at a quarter of the "variance preserving" scale: a random network at full scale
    # amplifies rounding (bf16 or q8_0 weights moved its logits by 4% and 14%), so it could
    # not tell a correct quantized forward from a wrong one; at this scale q8_0 moves them by
    # about 1%, as a trained model's are moved. Norm weights are perturbed so that the (1 + w)
    # offsets matter.
    LAYER_SCALE = 0.25
    # With tied embeddings a full-scale embedding dominates the residual stream and the
    # model only copies its input token (logit = |e|^2): keep the embedding at layer scale.
    tied = spec.get("tie_word_embeddings", False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = LAYER_SCALE if ".layers." in name or (tied and "embed" in name) else 1.0
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.2 * scale)
            elif name.endswith("A_log"):
                p.copy_((torch.rand_like(p) * 2.0 - 1.0) * scale)
            elif name.endswith("dt_bias"):
                p.copy_(torch.randn_like(p) * 0.5 * scale)
            elif p.dim() >= 2:
                fan_in = p.shape[-1]
                p.copy_(torch.randn_like(p) * (scale / fan_in ** 0.5))
            else:
                p.copy_(torch.randn_like(p) * 0.1 * scale)
        # The final norm's (1 + w) sets the logit scale: about 6, so that top-1/top-2 gaps
        # are large next to quantization error (see MIN_GAP).
        model.model.norm.weight.copy_(5.0 + torch.randn_like(model.model.norm.weight) * 0.2)
    return model


@torch.no_grad()
def greedy(model, ids):
    seq = list(ids)
    gaps = []
    for _ in range(N_GEN):
        logits = model(torch.tensor([seq])).logits[0, -1]
        top = torch.topk(logits, 2).values
        gaps.append(float(top[0] - top[1]))
        seq.append(int(torch.argmax(logits)))
    return seq, min(gaps)


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/qwen35"
    torch.set_default_dtype(torch.float32)
    import transformers
    print("transformers", transformers.__version__, "torch", torch.__version__)
    only = set(sys.argv[2:])  # optional: names of the configurations to (re)make
    for name, spec in CONFIGS.items():
        if only and name not in only:
            continue
        outdir = os.path.join(out_root, name)
        os.makedirs(outdir, exist_ok=True)
        tok = make_tokenizer(spec["vocab_size"], outdir)
        prompts = [tok.encode(t).ids[:20] for t in PROMPT_TEXTS]
        for seed in range(1, 200):
            model = build_model(spec, seed)
            model64 = build_model(spec, seed).double()
            results = [greedy(model64, p) for p in prompts]
            worst = min(g for _, g in results)
            if worst >= MIN_GAP:
                break
            print(f"{name}: seed {seed} min gap {worst:.3f} < {MIN_GAP}, trying the next")
        model.save_pretrained(outdir, safe_serialization=True)
        ref = {"model": name, "seed": seed, "n_gen": N_GEN, "min_gap": worst,
               "transformers": transformers.__version__, "torch": torch.__version__,
               "dtype": "float64 forward, float32 weights", "cases": []}
        for i, (p, (seq, gap)) in enumerate(zip(prompts, results)):
            with torch.no_grad():
                logits = model64(torch.tensor([seq])).logits[0, :-1].float().contiguous()
            logits.numpy().astype("<f4").tofile(os.path.join(outdir, f"logits_{i}.f32"))
            ref["cases"].append({"prompt": p, "sequence": seq, "n_prompt": len(p),
                                 "min_gap": gap, "logits": f"logits_{i}.f32",
                                 "shape": list(logits.shape)})
        with open(os.path.join(outdir, "reference.json"), "w") as f:
            json.dump(ref, f, indent=1)
        print(f"{name}: seed {seed}, min gap {worst:.3f}, params "
              f"{sum(p.numel() for p in model.parameters())}")


if __name__ == "__main__":
    main()
