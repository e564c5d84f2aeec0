"""What the drafter learns from: the target's own greedy continuations of corpus prompts (the
DFlash recipe trains on target-generated text, so the drafter imitates the target rather than
the corpus), and the target's hidden states on those sequences."""
import torch

from common import log


@torch.no_grad()
def greedy(model, prompts, n_new):
    """prompts [b, P] int64 on the device -> [b, P + n_new]: transformers' cache (KV for the
    attention layers, conv + recurrent state for the DeltaNet layers), one token per step."""
    try:    # only the last position's logits: a batch of 16K prompts would make 17 GB of them
        out = model(prompts, use_cache=True, logits_to_keep=1)
    except TypeError:
        out = model(prompts, use_cache=True)
    cache = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    seq = [prompts, nxt]
    for _ in range(n_new - 1):
        out = model(nxt, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        seq.append(nxt)
    return torch.cat(seq, dim=1)


def sample_prompts(data, n, length, gen):
    """n windows of the token stream that start right after a newline when one is near."""
    starts = torch.randint(0, data.size - length - 1, (n,), generator=gen).tolist()
    return torch.stack([torch.from_numpy(data[s:s + length].astype("int64")) for s in starts])


@torch.no_grad()
def features(model, seqs, layer_ids, batch=32, out=None):
    """Hidden states leaving each target layer in layer_ids (hidden_states[id + 1]),
    concatenated along the feature axis, bf16: [n, S, len(layer_ids) * E]. The base model only
    (model.model): the LM head's logits are not needed and were a large part of the cost.
    With `out` (a preallocated [n, S, F] bf16 tensor, on any device) the rows are written there."""
    outs = []
    for i in range(0, seqs.shape[0], batch):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hs = model.model(seqs[i:i + batch], output_hidden_states=True).hidden_states
        f = torch.cat([hs[j + 1] for j in layer_ids], dim=-1).to(torch.bfloat16)
        if out is None:
            outs.append(f)
        else:
            out[i:i + f.shape[0]].copy_(f, non_blocking=True)
    return torch.cat(outs) if out is None else out


def make_datasets(model, sources, prompt_len, gen_len, batch, device):
    """Several datasets in shared batches (sources: [(token stream, n, seed)]): the training and
    validation prompts go through the same forwards, in batches of equal size of at most
    `batch`; a small batch costs nearly as much per step as a full one."""
    prompts = [sample_prompts(data, n, prompt_len, torch.Generator().manual_seed(seed))
               for data, n, seed in sources]
    allp = torch.cat(prompts)
    n_batches = -(-allp.shape[0] // batch)
    size = -(-allp.shape[0] // n_batches)
    model.eval()
    out, i = [], 0
    while i < allp.shape[0]:
        oom = False
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out.append(greedy(model, allp[i:i + size].to(device), gen_len))
        except torch.OutOfMemoryError:
            oom = True
        if oom:     # (outside the handler: the traceback no longer holds the batch's tensors)
            # The cache and the DeltaNet temporaries grow with the batch: halve it and go on.
            torch.cuda.empty_cache()
            size = max(1, size // 2)
            log(f"generate: out of GPU memory, batches of {size} from here")
            continue
        i += out[-1].shape[0]
        torch.cuda.empty_cache()
        log(f"generate: {i}/{allp.shape[0]} sequences")
    seqs = torch.cat(out)
    return list(torch.split(seqs, [p.shape[0] for p in prompts]))
