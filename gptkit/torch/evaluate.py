"""Evaluating a model: loss, perplexity and bits per byte over a whole data split, and HellaSwag accuracy.

`split_loss` reads every token of a split once, in windows of block_size predictions (each window's
first input is the previous window's last target), so each token after the first is predicted exactly
once with as much context as fits. Bits per byte divides the summed loss (converted to bits) by the UTF-8
bytes of the predicted tokens, which makes models with different tokenizers comparable; special tokens
such as <|endoftext|> count as 0 bytes (they are not text).

`hellaswag` scores each example's four endings the way build-nanogpt does: the sum of the ending's token
losses (acc) and that sum divided by the ending's token count (acc_norm); the lowest wins.

Not here: reading HellaSwag's jsonl (gptkit.data.hellaswag), loading models (gptkit.torch.weights).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from gptkit.data.hellaswag import render
from gptkit.data.loaders import split_files
from gptkit.data.prepare import data_tokenizer, load_meta
from gptkit.torch.runtime import autocast


def token_byte_lengths(tok, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes of each token id; special tokens 0. Example (gpt2): " the" -> 4, <|endoftext|> -> 0"""
    specials = set(tok.special_tokens.values())
    return np.array([0 if i in specials else len(tok.token_bytes(i)) for i in range(vocab_size)], dtype=np.int64)


def _windows(data_dir, split: str, block_size: int, max_tokens: int):
    """Token windows of up to block_size + 1, overlapping by one, over the split's files as one stream."""
    paths, counts, dtype = split_files(data_dir, split)
    total = sum(counts) if not max_tokens else min(sum(counts), max_tokens)
    if total < 2:
        raise ValueError(f"the {split} split of {data_dir} has {total} token(s); at least 2 are needed")
    maps = [np.memmap(p, dtype=dtype, mode="r") for p, n in zip(paths, counts) if n]
    starts = np.cumsum([0] + [len(m) for m in maps])

    def read(a: int, b: int) -> np.ndarray:
        parts = []
        for m, s in zip(maps, starts):
            lo, hi = max(a, s), min(b, s + len(m))
            if lo < hi:
                parts.append(np.asarray(m[lo - s:hi - s]))
        return np.concatenate(parts).astype(np.int64)

    for a in range(0, total - 1, block_size):
        yield read(a, min(a + block_size + 1, total))


def _batched(windows, batch_size: int):
    """Lists of up to batch_size windows of one length (the shorter last window goes alone)."""
    batch: list[np.ndarray] = []
    for w in windows:
        if batch and len(w) != len(batch[0]):
            yield batch
            batch = []
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def split_loss(model, data_dir, split: str = "val", batch_size: int = 8, max_tokens: int = 0,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = False) -> dict:
    """{"loss", "perplexity", "bits_per_byte", "tokens", "bytes"} of `model` over a data split (see module doc).
    max_tokens > 0 reads only the split's first max_tokens tokens."""
    meta = load_meta(data_dir)
    vocab = meta["tokenizer"]["vocab_size"]
    if vocab != model.config.vocab_size:
        raise ValueError(f"{data_dir} was prepared with tokenizer {meta['tokenizer']['spec']!r} (vocab {vocab:,}); the "
                         f"model has vocab {model.config.vocab_size:,}; evaluate on data prepared with its tokenizer")
    nbytes = torch.from_numpy(token_byte_lengths(data_tokenizer(data_dir), vocab))
    device = torch.device(device)
    model.eval()
    nll, n_tok, n_bytes = 0.0, 0, 0
    from tqdm.auto import tqdm

    windows = _windows(data_dir, split, model.config.block_size, max_tokens)
    with tqdm(desc=f"eval {split}", unit="tok", unit_scale=True, disable=not progress, file=sys.stderr) as bar:
        for batch in _batched(windows, batch_size):
            xy = torch.from_numpy(np.stack(batch))
            x, y = xy[:, :-1].to(device), xy[:, 1:]
            with autocast(device, dtype):
                logits = model(x)[0]
            nll += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="sum").item()
            n_tok += y.numel()
            n_bytes += int(nbytes[y].sum())
            bar.update(y.numel())
    loss = nll / n_tok
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": nll / math.log(2) / max(n_bytes, 1),
            "tokens": n_tok, "bytes": n_bytes}


@torch.no_grad()
def score_endings(model, rows: list[list[int]], starts: list[int], device, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(sum, mean) of the token losses of each row's ending (tokens from starts[i] on), in one padded batch."""
    width = max(map(len, rows))
    x = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (row, s) in enumerate(zip(rows, starts)):
        x[i, :len(row)] = torch.tensor(row)
        mask[i, max(s, 1):len(row)] = True  # the first token of a row has no prediction
    with autocast(torch.device(device), dtype):
        logits = model(x.to(device))[0].float()
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].to(device).flatten(), reduction="none")
    losses = losses.view(len(rows), width - 1).cpu() * mask[:, 1:]
    counts = mask[:, 1:].sum(1)
    if (counts == 0).any():
        raise ValueError("a HellaSwag row has no ending token to score (empty context and a one-token ending)")
    total = losses.sum(1)
    return total.numpy(), (total / counts).numpy()


def hellaswag(model, tok, examples: list[dict], device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              progress: bool = False) -> dict:
    """{"acc", "acc_norm", "examples", "preds", "preds_norm"} over HellaSwag examples (see module doc)."""
    from tqdm.auto import tqdm

    model.eval()
    preds, preds_norm, right, right_norm = [], [], 0, 0
    for ex in tqdm(examples, desc="hellaswag", disable=not progress, file=sys.stderr):
        rows, starts = render(ex, tok, model.config.block_size)
        total, mean = score_endings(model, rows, starts, device, dtype)
        p, pn = int(np.argmin(total)), int(np.argmin(mean))  # ties: the first ending
        preds.append(p)
        preds_norm.append(pn)
        right += p == ex["label"]
        right_norm += pn == ex["label"]
    n = len(examples)
    return {"acc": right / n, "acc_norm": right_norm / n, "examples": n, "preds": preds, "preds_norm": preds_norm}


def chat_accuracy(model, tok, rows: list[dict], fmt, batch_size: int = 16) -> dict:
    """Exact-match accuracy of a chat model on conversations whose last turn is the assistant's right answer: each
    conversation before that turn, rendered in the model's chat format `fmt` with the assistant's header, generated
    greedily through the engine (batched), compared with the answer; and how often the reply ended by itself with
    the end-of-turn token (not cut at the length limit).
    Example: rows of the built-in `reverse` task -> {"accuracy": 0.93, "ended": 1.0, "conversations": 500}"""
    from gptkit.generate.engine import Request, generate_ids
    from gptkit.tokenizer.chat import encode_chat
    from gptkit.torch.cpu import for_cpu_decoding
    from gptkit.torch.generate import Engine

    if fmt is None:
        raise ValueError("this model has no chat format (a base model); finetune it on conversations first: "
                         "`gptkit train --init_from MODEL --data reverse` (docs/data.md)")
    end = tok.encode(fmt.end_of_turn, allowed_special="all")
    if len(end) != 1:
        raise ValueError(f"the chat format's end of turn {fmt.end_of_turn!r} is not one token of this tokenizer")
    end = end[0]
    requests = []
    for r in rows:
        prompt, answer = r["messages"][:-1], r["messages"][-1]["content"]
        ids, _ = encode_chat(tok, fmt, prompt, add_generation_prompt=True)
        limit = 2 * len(tok.encode(answer)) + 8  # room to go wrong, and to say where the reply ends
        requests.append(Request(tuple(ids), limit, temperature=0.0, stop_tokens=(end,)))
    outs = generate_ids(Engine(for_cpu_decoding(model, batch_size), batch_size), requests)
    return score_replies(tok, rows, outs, [r.max_new_tokens for r in requests])


def score_replies(tok, rows: list[dict], outs: list[list[int]], limits: list[int]) -> dict:
    """Exact match of each reply (ids without the end-of-turn token) with its row's last turn, and the share that
    ended before their length limit (by the end-of-turn token)."""
    right = sum(tok.decode(out) == r["messages"][-1]["content"] for out, r in zip(outs, rows))
    ended = sum(len(out) < limit for out, limit in zip(outs, limits))
    n = max(len(rows), 1)
    return {"accuracy": right / n, "ended": ended / n, "conversations": len(rows)}
