"""What the drafter learns from: the target's own greedy continuations of corpus prompts (the
DFlash recipe trains on target-generated text, so the drafter imitates the target rather than
the corpus), and the target's hidden states on those sequences."""
import torch

from common import log


@torch.no_grad()
def greedy(model, prompts, n_new):
    """prompts [b, P] int64 on the device -> [b, P + n_new]: transformers' cache (KV for the
    attention layers, conv + recurrent state for the DeltaNet layers), one token per step."""
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
def features(model, seqs, layer_ids, batch=32):
    """Hidden states leaving each target layer in layer_ids (hidden_states[id + 1]),
    concatenated along the feature axis, bf16: [n, S, len(layer_ids) * E]."""
    outs = []
    for i in range(0, seqs.shape[0], batch):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hs = model(seqs[i:i + batch], output_hidden_states=True).hidden_states
        outs.append(torch.cat([hs[j + 1] for j in layer_ids], dim=-1).to(torch.bfloat16))
    return torch.cat(outs)


def make_dataset(model, data, n_seq, prompt_len, gen_len, batch, seed, device):
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    seqs = []
    for i in range(0, n_seq, batch):
        prompts = sample_prompts(data, min(batch, n_seq - i), prompt_len, gen).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            seqs.append(greedy(model, prompts, gen_len))
        log(f"generate: {i + prompts.shape[0]}/{n_seq} sequences")
    return torch.cat(seqs)
