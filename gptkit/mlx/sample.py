"""Sampling in MLX with the options of gptkit.sample: temperature (0 = greedy), top-k, top-p, a seed, a stop
token, the KV cache, and nanoGPT's sliding window past block_size (so cached == uncached logits).

Randomness comes from an explicit `mx.random.key(seed)`, split per step; the same seed gives the same
text with MLX, but not the same text as torch's generator (greedy decoding is identical across backends).
"""

from __future__ import annotations

from collections.abc import Iterator

import mlx.core as mx

from gptkit.config import check_sampling


def filter_logits(logits: mx.array, top_k: int | None = None, top_p: float | None = None) -> mx.array:
    """Logits (B, V) with everything outside the top-k and outside the top-p nucleus set to -inf (as torch's)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = mx.sort(logits, axis=-1)[..., -top_k:][..., :1]
        logits = mx.where(logits < kth, -mx.inf, logits)
    if top_p is not None and top_p < 1.0:
        order = mx.argsort(-logits, axis=-1)
        probs = mx.softmax(mx.take_along_axis(logits, order, axis=-1), axis=-1)
        before = mx.cumsum(probs, axis=-1) - probs  # mass ranked above each token; the first is always kept
        drop = mx.take_along_axis(before >= top_p, mx.argsort(order, axis=-1), axis=-1)
        logits = mx.where(drop, -mx.inf, logits)
    return logits


def sample_next(logits: mx.array, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                key: mx.array | None = None) -> mx.array:
    """One token id per row of logits (B, V) -> (B,). temperature 0 = argmax."""
    logits = logits.astype(mx.float32)
    if temperature == 0:
        return mx.argmax(logits, axis=-1)
    return mx.random.categorical(filter_logits(logits / temperature, top_k, top_p), axis=-1, key=key)


def generate(model, idx: mx.array, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, stop_token: int | None = None,
             use_cache: bool = True) -> Iterator[mx.array]:
    """Yield the next token ids (B,) after the prompt idx (B, T), step by step; see gptkit.sample.generate."""
    check_sampling(temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    bs = model.config.block_size
    seq = idx[:, -bs:]
    cache = model.new_cache(idx.shape[0]) if use_cache else None
    logits = model(seq, cache=cache)[:, -1]
    done = mx.zeros((idx.shape[0],), dtype=mx.bool_)
    key = mx.random.key(seed)
    try:
        for step in range(max_new_tokens):
            key, sub = mx.random.split(key)
            nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, key=sub)
            if stop_token is not None:
                nxt = mx.where(done, stop_token, nxt)
                done = done | (nxt == stop_token)
            mx.eval(nxt)
            yield nxt
            if step == max_new_tokens - 1 or bool(done.all()):
                return
            seq = mx.concatenate([seq, nxt[:, None].astype(seq.dtype)], axis=1)[:, -bs:]
            if cache is not None and cache.pos < bs:
                logits = model(nxt[:, None], cache=cache)[:, -1]
            else:  # the cache is full (or off): the last block_size tokens, as the uncached model sees them
                cache = None
                logits = model(seq)[:, -1]
    finally:
        model.train(was_training)


def stream_text(model, tok, prompt_ids: list[int], max_new_tokens: int, **kwargs) -> Iterator[str]:
    """Decoded text as it is generated (whole UTF-8 characters), stopping at <|endoftext|>; see gptkit.sample."""
    stream = generate(model, mx.array([prompt_ids]), max_new_tokens, stop_token=tok.eot_token, **kwargs)
    yield from tok.decode_stream(int(nxt[0].item()) for nxt in stream)
