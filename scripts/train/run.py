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
machine continues after the target stage.

--target-gguf FILE --bundle DIR|TAR starts after the target stage from OUR GGUF instead
(gguf_to_hf.py rebuilds the HF weights, Q8_0 dequantized, so the drafter learns the target
exactly as dflash runs it); the bundle gives config.json, the tokenizer files and the report
of the run that made the target (prior_report.json, or report.json in a bundle.tar), and may
give prompts.jsonl (the held-out evaluation prompts, used as they are), eval_dflash.json
(dflash's greedy text of those prompts: the acceptance replay then runs on it) and
dflash_greedy.json (dflash's greedy tokens on a few prompts: with --set check_greedy=true the
rebuilt target's own are compared with them; its held-out loss is always measured). Such a
run is one invocation (scripts/train/retrain_from_gguf.sh makes it): the drafter's time is
what the budget leaves (drafter_s "auto") and the export holds the drafter alone. --baseline-drafter FILE (a drafter GGUF) is evaluated
on the same target and prompts for comparison. --set KEY=VALUE overrides a recipe value."""
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
# Recipe values the original full runs did not have (their behaviour is the default).
FULL.update(feat_cache=False, gpu_reserve_gb=12, eval_every=500, reserve_s=45, check_greedy=True)
# Starting from the target GGUF: one invocation, features precomputed once. Generation runs
# in batches of 16K sequences (an H100 ran out of memory at 20.6K); --set n_seq=32512 makes
# training + validation prompts exactly two such batches.
FROM_GGUF = dict(drafter_s="auto", feat_cache=True, gen_batch=16384, check_greedy=False,
                 eval_every=1000, reserve_s=35)
SMOKE = dict(FULL, corpus_mb=6, tok_sample_mb=2, seq=128, batch=16, target_s=25, n_seq=64, n_val=32,
             prompt_len=32, gen_len=96, gen_batch=64, drafter_s=20, d_batch=8, anchors=4,
             d_layers=1, layer_ids=[0, 1, 2], eval_prompts=3, eval_new=48)


def load_target(work, device):
    from transformers import Qwen3_5ForCausalLM
    m = Qwen3_5ForCausalLM.from_pretrained(os.path.join(work, "target", "hf"),
                                           dtype=torch.float32).to(device)
    return m.eval()


def export(work, out, P, with_target=True):
    """OUTDIR: target shards (unless the target came from a GGUF: it is unchanged), the
    drafter, bundle.tar."""
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
        if with_target and name.endswith(".safetensors"):
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


def unpack_bundle(bundle, work):
    """A folder as it is, or bundle.tar's target/ files + report.json into WORK/bundle."""
    if os.path.isdir(bundle):
        return bundle
    d = os.path.join(work, "bundle")
    os.makedirs(d, exist_ok=True)
    with tarfile.open(bundle) as tar:
        for m in tar.getmembers():
            if m.name.startswith("target/") or m.name in ("report.json", "prompts.jsonl"):
                m.name = os.path.basename(m.name)
                tar.extract(m, d)
            elif m.name == "drafter/config.json":
                tar.extract(m, d)
    if os.path.exists(os.path.join(d, "report.json")):
        os.replace(os.path.join(d, "report.json"), os.path.join(d, "prior_report.json"))
    return d


def from_gguf(gguf, bundle, work):
    """Rebuilds the target stage from a target GGUF: WORK/target/hf in f32 (dequantized)."""
    import gguf_to_hf
    hf = os.path.join(stage_dir(work, "target"), "hf")
    n = gguf_to_hf.convert("target", gguf, hf, bundle, "f32")
    log(f"target rebuilt from {gguf}: {n / 1e6:.2f}M parameters")
    tdir = stage_dir(work, "tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(bundle, name), tdir)
    report = json.load(open(os.path.join(bundle, "prior_report.json")))
    shutil.copy(os.path.join(bundle, "prior_report.json"), os.path.join(work, "prior_report.json"))
    if not is_done(work, "tokenizer"):
        mark_done(work, "tokenizer", report["tokenizer"])
    mark_done(work, "target", dict(report["target"], rebuilt_from=os.path.basename(gguf)))


@torch.no_grad()
def check_target(target, held_data, bundle, P, device):
    """The rebuilt target against the run that made it: held-out loss (the same windows as
    target.py measured) and dflash's greedy tokens, if the bundle has them."""
    res = {"heldout_loss": round(target_mod.heldout_loss(target, held_data, P["seq"], 256, device), 4)}
    target.eval()    # heldout_loss leaves the model in training mode
    path = os.path.join(bundle, "dflash_greedy.json")
    if os.path.exists(path) and P["check_greedy"]:
        res["greedy_same_prefix"] = []
        for case in json.load(open(path)):
            ids = torch.tensor([case["ids"]], device=device)
            want = case["greedy"]
            got = generate.greedy(target, ids, len(want))[0, ids.shape[1]:].tolist()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                got16 = generate.greedy(target, ids, len(want))[0, ids.shape[1]:].tolist()
            same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(want))
            same16 = next((i for i, (a, b) in enumerate(zip(got16, want)) if a != b), len(want))
            res["greedy_same_prefix"].append({"prompt": case["prompt"], "f32": same,
                                              "bf16": same16, "of": len(want)})
    log(f"target check: {json.dumps(res)}")
    return res


def heldout_check(prompts, cdir):
    """How many evaluation prompts occur verbatim in a training document (should be none)."""
    found = []
    for doc in corpus.documents(os.path.join(cdir, "train.jsonl")):
        for i, p in enumerate(prompts):
            if i not in found and p["text"] in doc["text"]:
                found.append(i)
    return sorted(found)


def run_eval(work, args, bundle, P, dcfg, rdir, edir, cdir, target, tok, device):
    """Acceptance of the new drafter (and of --baseline-drafter) on the evaluation prompts."""
    from safetensors.torch import load_file
    drafter = Drafter(dcfg).to(device)
    drafter.load_state_dict({k: v.float() for k, v in
                             load_file(os.path.join(rdir, "hf", "model.safetensors")).items()})
    drafter.eval()
    if bundle and os.path.exists(os.path.join(bundle, "prompts.jsonl")):
        prompts = [json.loads(line) for line in open(os.path.join(bundle, "prompts.jsonl"))]
    else:
        prompts = evaluate.pick_prompts(corpus.documents(os.path.join(cdir, "heldout.jsonl")),
                                        P["eval_prompts"], 240, 5)
    evaluate.save_prompts(prompts, os.path.join(edir, "prompts.jsonl"))
    seq_cache = {}    # the target's greedy text and features, shared by both drafters
    fixed = None
    if bundle and os.path.exists(os.path.join(bundle, "eval_dflash.json")):
        fixed = json.load(open(os.path.join(bundle, "eval_dflash.json")))
        if len(fixed) != len(prompts):
            fixed = None
    summary = evaluate.acceptance(target, drafter, tok, prompts, P["eval_new"], device,
                                  seq_cache, fixed)
    summary["target_text"] = "dflash greedy (eval_dflash.json)" if fixed else "PyTorch greedy"
    summary["prompts_in_training_documents"] = heldout_check(prompts, cdir)
    if args.baseline_drafter:
        import gguf_to_hf
        bdir = os.path.join(work, "baseline_drafter")
        gguf_to_hf.convert("drafter", args.baseline_drafter, bdir,
                           os.path.join(bundle, "drafter") if bundle else rdir + "/hf")
        bcfg = json.load(open(os.path.join(bdir, "config.json")))
        base = Drafter(bcfg).to(device)
        base.load_state_dict(load_file(os.path.join(bdir, "model.safetensors")))
        base.eval()
        summary["baseline"] = dict(
            evaluate.acceptance(target, base, tok, prompts, P["eval_new"], device, seq_cache,
                                fixed),
            drafter=os.path.basename(args.baseline_drafter))
        del base
    mark_done(work, "eval", summary)


def parse_value(v):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the recipe in ~2 min")
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--resume-from")
    ap.add_argument("--target-gguf", help="start after the target stage from this GGUF")
    ap.add_argument("--bundle", help="with --target-gguf: config, tokenizer, prior report")
    ap.add_argument("--baseline-drafter", help="a drafter GGUF evaluated for comparison")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value (JSON), e.g. --set n_seq=49152")
    args = ap.parse_args()
    P = dict(SMOKE if args.smoke else FULL)
    if args.target_gguf:
        P.update(FROM_GGUF)
    for kv in args.set:
        k, _, v = kv.partition("=")
        if k not in P:
            ap.error(f"--set {k}: not a recipe key ({', '.join(sorted(P))})")
        P[k] = parse_value(v)
    if bool(args.target_gguf) != bool(args.bundle):
        ap.error("--target-gguf and --bundle go together")
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
    bundle = None
    if args.target_gguf:
        bundle = unpack_bundle(args.bundle, work)
        if not is_done(work, "target"):
            from_gguf(args.target_gguf, bundle, work)

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
    if bundle and not os.path.exists(os.path.join(work, "target_check.json")):
        with open(os.path.join(work, "target_check.json"), "w") as f:
            json.dump(check_target(target, held_data, bundle, P, device), f)

    ddir = stage_dir(work, "data")
    data_path = os.path.join(ddir, "seqs.pt")
    if not is_done(work, "data"):
        seqs, val = generate.make_datasets(target, [(train_data, P["n_seq"], 77),
                                                    (held_data, P["n_val"], 78)],
                                           P["prompt_len"], P["gen_len"], P["gen_batch"], device)
        torch.save({"train": seqs.cpu(), "val": val.cpu()}, data_path)
        mark_done(work, "data", {"sequences": seqs.shape[0], "validation": val.shape[0],
                                 "length": seqs.shape[1], "prompt_len": P["prompt_len"]})
    data = torch.load(data_path)
    seqs, val_seqs = data["train"].to(device), data["val"].to(device)
    feats_store = None
    if P["feat_cache"] and not is_done(work, "drafter"):
        # All training features at once (one target pass per sequence instead of one per
        # visit): bf16 on the GPU when it fits, else in pinned host memory.
        F_ = len(P["layer_ids"]) * target.config.hidden_size
        need = seqs.shape[0] * seqs.shape[1] * F_ * 2
        torch.cuda.empty_cache()    # blocks the generation cached count as free here
        free = torch.cuda.mem_get_info()[0]
        where = device if need < free - P["gpu_reserve_gb"] * 2 ** 30 else "cpu"
        feats_store = torch.empty((seqs.shape[0], seqs.shape[1], F_), dtype=torch.bfloat16,
                                  device=where, pin_memory=where == "cpu")
        generate.features(target, seqs, P["layer_ids"], 256, out=feats_store)
        torch.cuda.synchronize()
        log(f"features of {seqs.shape[0]} sequences precomputed: {need / 2 ** 30:.1f} GiB on {where}")

    dcfg = make_config(target.config, specials[tok_mod.MASK], P["layer_ids"], P["block"],
                       P["d_layers"], args.smoke)
    rdir = stage_dir(work, "drafter")
    if not is_done(work, "drafter"):
        embed_w = target.get_input_embeddings().weight.detach()
        d_s = P["drafter_s"]
        if d_s == "auto":   # what the budget leaves after the evaluation(s) and the export
            d_s = max(30.0, deadline.left() - P["reserve_s"] - (15 if args.baseline_drafter else 0) - 40)
            log(f"drafter: {d_s:.0f} s of training fit the budget")
        res = train_drafter.train(dcfg, target, seqs, val_seqs, embed_w, P["prompt_len"], rdir, deadline,
                                  d_s, P["d_batch"], P["anchors"], P["gamma"],
                                  P["d_lr"], device, feats_store=feats_store,
                                  eval_every=P["eval_every"], finish=bool(args.target_gguf))
        if res is None:
            return 3
        drafter, summary = res
        save_drafter(drafter, dcfg, os.path.join(rdir, "hf"))
        mark_done(work, "drafter", summary)

    edir = stage_dir(work, "eval")
    if not is_done(work, "eval"):
        try:
            run_eval(work, args, bundle, P, dcfg, rdir, edir, cdir, target, tok, device)
        except Exception as e:      # keep the trained drafter: export it with the error noted
            import traceback
            traceback.print_exc()
            mark_done(work, "eval", {"error": f"{type(e).__name__}: {e}"})

    report = {st: read_summary(work, st) for st in
              ("corpus", "tokenizer", "target", "data", "drafter", "eval")}
    if bundle:
        # The target's own history stays as the run that trained it wrote it.
        prior = json.load(open(os.path.join(work, "prior_report.json")))
        report["target"] = dict(prior["target"], rebuilt_from=os.path.basename(args.target_gguf))
        report["target_check"] = json.load(open(os.path.join(work, "target_check.json")))
        report["prior_corpus"] = prior["corpus"]
    report["recipe"] = {k: v for k, v in P.items()}
    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                          "gpu": torch.cuda.get_device_name()}
    with open(os.path.join(work, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    export(work, args.out, P, with_target=not bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
