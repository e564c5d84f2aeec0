"""A byte-level BPE laid out like Qwen3.5's tokenizer: NFC, the Qwen3.5 split regex (Qwen2's
with combining marks \\p{M} kept with letters), byte-level mapping, ChatML special tokens, and
one extra special token, <|mask|>, that the DFlash drafter uses for the positions it predicts.

Also turns the corpus into token streams: documents joined by <|endoftext|>, uint16."""
import json
import os

import numpy as np

from common import log
from corpus import documents

QWEN35_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
EOS = "<|endoftext|>"
MASK = "<|mask|>"
# ChatML, as Qwen models use it; the model is a code model, but the server needs a template.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def train(corpus_dir, out_dir, vocab_size, sample_bytes):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)

    def sample():
        n = 0
        for doc in documents(os.path.join(corpus_dir, "train.jsonl")):
            if n >= sample_bytes:
                return
            n += len(doc["text"])
            yield doc["text"]

    tok.train_from_iterator(sample(), trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "bos_token": None, "eos_token": EOS,
                   "pad_token": EOS, "chat_template": CHAT_TEMPLATE,
                   "model_max_length": 4096}, f, indent=1)
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    log(f"tokenizer: {tok.get_vocab_size()} tokens, specials {ids}")
    return ids


def load(tok_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))


def encode_corpus(tok, corpus_dir, out_dir):
    """train.u16 / heldout.u16: every document's ids followed by <|endoftext|>."""
    eos = tok.token_to_id(EOS)
    stats = {}
    for split in ("train", "heldout"):
        chunks, batch, n_chars = [], [], 0
        def flush():
            for enc in tok.encode_batch(batch):
                chunks.append(np.asarray(enc.ids + [eos], dtype=np.uint16))
            batch.clear()
        for doc in documents(os.path.join(corpus_dir, f"{split}.jsonl")):
            batch.append(doc["text"])
            n_chars += len(doc["text"])
            if len(batch) == 2048:
                flush()
        flush()
        stream = np.concatenate(chunks)
        stream.tofile(os.path.join(out_dir, f"{split}.u16"))
        stats[split] = {"tokens": int(stream.size), "chars": n_chars,
                        "chars_per_token": round(n_chars / max(1, stream.size), 3)}
        log(f"encoded {split}: {stream.size} tokens, {stats[split]['chars_per_token']} chars/token")
    return stats


def stream(path):
    return np.fromfile(path, dtype=np.uint16)
