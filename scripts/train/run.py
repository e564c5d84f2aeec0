#!/usr/bin/env python3
"""Trains the embedded pair of dflash: a small qwen35 target and its DFlash drafter.

    python3 scripts/train/run.py --work DIR --out OUTDIR [--smoke] [--budget-s 540]

Stages (each skipped when WORK/<stage>/DONE exists, so rerunning the same command resumes):
  corpus     Python sources + docs of the installed packages with a permissive license,
             deduplicated, 2% of the files held out                      (corpus.py)
  tokenizer  byte-level BPE, Qwen3.5 split regex, ChatML + <|mask|>; token streams (tokenizer.py)
  target     Qwen3_5ForCausalLM trained from scratch; held-out loss       (target.py)
  data       the target's greedy continuations of corpus prompts          (generate.py)
  drafter    DFlash drafter on those sequences and the target's features  (train_drafter.py)
  eval       acceptance length on held-out code prompts, in PyTorch       (evaluate.py)
  export     OUTDIR: target shards (bf16 safetensors, < 16 MB each), drafter safetensors,
             bundle.tar (configs, tokenizer, prompts, report.json)
A stage cut short by --budget-s checkpoints; run the same command again to go on. One H100
runs the full recipe in two invocations of 9 minutes (docs in models/README.md).
--resume-from DIR unpacks an earlier OUTDIR (target shards + bundle.tar) so that a fresh
machine continues after the target stage."""
import argparse
import json
import os
import shutil
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import corpus  # noqa: E402
import evaluate  # noqa: E402
import generate  # noqa: E402
import target as target_mod  # noqa: E402
import tokenizer as tok_mod  # noqa: E402
import train_drafter  # noqa: E402
from common import Deadline, is_done, log, mark_done, read_summary, stage_dir  # noqa: E402
from drafter import Drafter, make_config, save as save_drafter  # noqa: E402

FULL = dict(corpus_mb=160, tok_sample_mb=40, vocab=8192, seq=512, batch=64, lr=1.5e-3,
            target_s=380, n_seq=32768, n_val=256, prompt_len=64, gen_len=448, gen_batch=4096,
            drafter_s=320, d_batch=32, anchors=32, gamma=7.0, d_lr=1e-3, d_layers=2,
            layer_ids=[1, 4, 6], block=16, eval_prompts=24, eval_new=256)
SMOKE = dict(FULL, corpus_mb=6, tok_sample_mb=2, seq=128, batch=16, target_s=25, n_seq=64, n_val=32,
             prompt_len=32, gen_len=96, gen_batch=64, drafter_s=20, d_batch=8, anchors=4,
             d_layers=1, layer_ids=[0, 1, 2], eval_prompts=3, eval_new=48)


def load_target(work, device):
    from transformers import Qwen3_5ForCausalLM
    m = Qwen3_5ForCausalLM.from_pretrained(os.path.join(work, "target", "hf"),
                                           dtype=torch.float32).to(device)
    return m.eval()


def export(work, out, P):
    os.makedirs(out, exist_ok=True)
    hf = os.path.join(work, "target", "hf")
    bundle = os.path.join(out, "bundle.tar")
    with tarfile.open(bundle, "w") as tar:
        for name in sorted(os.listdir(hf)):
            if not name.endswith(".safetensors"):
                tar.add(os.path.join(hf, name), arcname=f"target/{name}")
        tar.add(os.path.join(work, "drafter", "hf", "config.json"), arcname="drafter/config.json")
        tar.add(os.path.join(work, "eval", "prompts.jsonl"), arcname="prompts.jsonl")
        tar.add(os.path.join(work, "corpus", "manifest.json"), arcname="corpus_manifest.json")
        tar.add(os.path.join(work, "report.json"), arcname="report.json")
    for name in sorted(os.listdir(hf)):
        if name.endswith(".safetensors"):
            shutil.copy(os.path.join(hf, name), os.path.join(out, name))
    shutil.copy(os.path.join(work, "drafter", "hf", "model.safetensors"),
                os.path.join(out, "drafter.safetensors"))
    log(f"exported to {out}: {sorted(os.listdir(out))}")


def resume_from(src, work):
    """Unpacks an earlier export so the stages up to `target` count as done."""
    hf = stage_dir(work, "target") + "/hf"
    os.makedirs(hf, exist_ok=True)
    with tarfile.open(os.path.join(src, "bundle.tar")) as tar:
        for m in tar.getmembers():
            if m.name.startswith("target/"):
                m.name = m.name[len("target/"):]
                tar.extract(m, hf)
            elif m.name == "report.json":
                m.name = "prior_report.json"
                tar.extract(m, work)
    for name in os.listdir(src):
        if name.startswith("model") and name.endswith(".safetensors"):
            shutil.copy(os.path.join(src, name), hf)
    report = json.load(open(os.path.join(work, "prior_report.json")))
    tdir = stage_dir(work, "tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(hf, name), tdir)
    for st in ("tokenizer", "target"):
        if not is_done(work, st):
            mark_done(work, st, report[st])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the recipe in ~2 min")
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--resume-from")
    args = ap.parse_args()
    P = SMOKE if args.smoke else FULL
    deadline = Deadline(args.budget_s)
    work = args.work
    os.makedirs(work, exist_ok=True)
    device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    import transformers
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.cuda.get_device_name()}")
    if args.resume_from and not is_done(work, "target"):
        resume_from(args.resume_from, work)

    cdir = stage_dir(work, "corpus")
    if not is_done(work, "corpus"):
        mark_done(work, "corpus", corpus.build(cdir, P["corpus_mb"] * 10 ** 6))
    tdir = stage_dir(work, "tokenizer")
    if not os.path.exists(os.path.join(tdir, "train.u16")):
        if not os.path.exists(os.path.join(tdir, "tokenizer.json")):
            tok_mod.train(cdir, tdir, P["vocab"], P["tok_sample_mb"] * 10 ** 6)
        tok = tok_mod.load(tdir)
        stats = tok_mod.encode_corpus(tok, cdir, tdir)
        specials = {s: tok.token_to_id(s) for s in tok_mod.SPECIALS}
        if not is_done(work, "tokenizer"):
            mark_done(work, "tokenizer", {"vocab": P["vocab"], "specials": specials, **stats})
    tok = tok_mod.load(tdir)
    specials = {s: tok.token_to_id(s) for s in tok_mod.SPECIALS}
    train_data = tok_mod.stream(os.path.join(tdir, "train.u16"))
    held_data = tok_mod.stream(os.path.join(tdir, "heldout.u16"))

    gdir = stage_dir(work, "target")
    if not is_done(work, "target"):
        cfg = target_mod.make_config(P["vocab"], specials, args.smoke)
        res = target_mod.train(cfg, train_data, held_data, gdir, deadline, P["target_s"],
                               P["seq"], P["batch"], P["lr"], device)
        if res is None:
            return 3
        model, summary = res
        hf = os.path.join(gdir, "hf")
        model.to(torch.bfloat16).save_pretrained(hf, max_shard_size="14MB")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tdir, name), hf)
        mark_done(work, "target", summary)
        del model
    target = load_target(work, device)

    ddir = stage_dir(work, "data")
    data_path = os.path.join(ddir, "seqs.pt")
    if not is_done(work, "data"):
        seqs = generate.make_dataset(target, train_data, P["n_seq"], P["prompt_len"], P["gen_len"],
                                     P["gen_batch"], 77, device)
        val = generate.make_dataset(target, held_data, P["n_val"], P["prompt_len"], P["gen_len"],
                                    P["gen_batch"], 78, device)
        torch.save({"train": seqs.cpu(), "val": val.cpu()}, data_path)
        mark_done(work, "data", {"sequences": seqs.shape[0], "validation": val.shape[0],
                                 "length": seqs.shape[1], "prompt_len": P["prompt_len"]})
    data = torch.load(data_path)
    seqs, val_seqs = data["train"].to(device), data["val"].to(device)

    dcfg = make_config(target.config, specials[tok_mod.MASK], P["layer_ids"], P["block"],
                       P["d_layers"], args.smoke)
    rdir = stage_dir(work, "drafter")
    if not is_done(work, "drafter"):
        embed_w = target.get_input_embeddings().weight.detach()
        res = train_drafter.train(dcfg, target, seqs, val_seqs, embed_w, P["prompt_len"], rdir, deadline,
                                  P["drafter_s"], P["d_batch"], P["anchors"], P["gamma"],
                                  P["d_lr"], device)
        if res is None:
            return 3
        drafter, summary = res
        save_drafter(drafter, dcfg, os.path.join(rdir, "hf"))
        mark_done(work, "drafter", summary)

    edir = stage_dir(work, "eval")
    if not is_done(work, "eval"):
        from safetensors.torch import load_file
        drafter = Drafter(dcfg).to(device)
        drafter.load_state_dict({k: v.float() for k, v in
                                 load_file(os.path.join(rdir, "hf", "model.safetensors")).items()})
        drafter.eval()
        prompts = evaluate.pick_prompts(corpus.documents(os.path.join(cdir, "heldout.jsonl")),
                                        P["eval_prompts"], 240, 5)
        evaluate.save_prompts(prompts, os.path.join(edir, "prompts.jsonl"))
        mark_done(work, "eval", evaluate.acceptance(target, drafter, tok, prompts, P["eval_new"],
                                                    device))

    report = {st: read_summary(work, st) for st in
              ("corpus", "tokenizer", "target", "data", "drafter", "eval")}
    report["recipe"] = {k: v for k, v in P.items()}
    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                          "gpu": torch.cuda.get_device_name()}
    with open(os.path.join(work, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    export(work, args.out, P)
    return 0


if __name__ == "__main__":
    sys.exit(main())
