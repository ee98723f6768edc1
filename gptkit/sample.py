"""Sampling from a model: one next token from logits (`sample_next`), and a token stream (`generate`).

Randomness comes only from the `torch.Generator` passed in, so sampling during training never moves
the training RNG and a seed gives the same text on the same machine. Temperature 0 is greedy.
`generate` decodes with the model's KV cache; past block_size tokens it falls back to nanoGPT's
sliding window (the last block_size tokens, no cache), so its logits always equal the uncached ones.

Not here: tokenizers and text (the CLI decodes), loading checkpoints (gptkit.checkpoint / gptkit.train).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.nn import functional as F

from gptkit.config import check_sampling  # noqa: F401 (re-exported: the CLI checks options before loading)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits (B, V) with everything outside the top-k and outside the top-p nucleus set to -inf.

    Example: logits [[3., 2., 1., 0.]], top_k=2 -> [[3., 2., -inf, -inf]]
    top-p keeps the smallest set of most likely tokens whose probabilities sum to >= top_p (at least one).
    """
    logits = logits.clone()
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass of the tokens ranked above each one
        drop_sorted = before >= top_p  # the first token is always kept (before = 0)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,). temperature 0 = argmax."""
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token ids (B,) of each row, step by step, after the prompt idx (B, T).

    Stops early once every row has produced `stop_token`; a row that has stopped keeps yielding
    `stop_token`, so the caller cuts each row at its first one. The model must be in eval mode.
    """
    check_sampling(temperature, top_k, top_p)
    bs = model.config.block_size
    seq = idx[:, -bs:]
    cache = model.new_cache(idx.size(0)) if use_cache else None
    logits = model(seq, cache=cache)[0][:, -1]
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for step in range(max_new_tokens):
        nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if stop_token is not None:
            nxt = torch.where(done, torch.full_like(nxt, stop_token), nxt)
            done |= nxt == stop_token
        yield nxt
        if step == max_new_tokens - 1 or bool(done.all()):
            return
        seq = torch.cat([seq, nxt[:, None]], dim=1)[:, -bs:]
        if cache is not None and cache.pos < bs:
            logits = model(nxt[:, None], cache=cache)[0][:, -1]
        else:  # the cache is full (or off): the last block_size tokens, as the uncached model sees them
            cache = None
            logits = model(seq)[0][:, -1]


def stream_text(model, tok, prompt_ids: list[int], max_new_tokens: int, *, device="cpu", **kwargs) -> Iterator[str]:
    """Decoded text as it is generated after `prompt_ids`: whole UTF-8 characters only (a character split
    across tokens comes out when complete), stopping at the tokenizer's <|endoftext|> if it has one."""
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    stream = generate(model, idx, max_new_tokens, stop_token=tok.eot_token, **kwargs)
    yield from tok.decode_stream(int(nxt[0]) for nxt in stream)
