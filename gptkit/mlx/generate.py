"""The generation engine in MLX: gptkit.torch.generate's Engine with the same API and the same math (static cache with
per-row positions, the window slide of gptkit.generate.engine, Gumbel-max sampling over the same hashed noise, so a seed
gives the same draws as in PyTorch up to float rounding), the decode step compiled with mx.compile (one graph per
attention span and sampling mode, built in milliseconds). Never imports torch.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx

from gptkit.generate.engine import MASK32, MIX32, EngineBase, Request, context_length, generate_ids
from gptkit.mlx.model import KVCache

_MUL = tuple(mx.array(c, dtype=mx.uint32) for c in MIX32)


def mix32(x: mx.array) -> mx.array:
    """gptkit.generate.engine.mix32 on uint32 arrays (multiplication wraps mod 2^32).

    Example: mix32([1]) -> [1753845952]"""
    x = x ^ (x >> 16)
    x = x * _MUL[0]
    x = x ^ (x >> 15)
    x = x * _MUL[1]
    return x ^ (x >> 16)


def uniform(seed: mx.array, count: mx.array, vocab_hash: mx.array) -> mx.array:
    """(B, V) in (0, 1) from each row's folded uint32 seed, token number and the vocab hash, as
    gptkit.torch.generate."""
    bits = mix32(mix32(mix32(seed) ^ count)[:, None] ^ vocab_hash[None, :]) >> 8
    return (bits.astype(mx.float32) + 0.5) * 2.0**-24


def filter_rows(logits: mx.array, top_k: mx.array, top_p: mx.array) -> mx.array:
    """Each row's top-k (ties kept), then its top-p nucleus; the rest -inf (gptkit.torch.generate.filter_rows)."""
    V = logits.shape[-1]
    order = mx.argsort(-logits, axis=-1)
    ordered = mx.take_along_axis(logits, order, axis=-1)
    kth = mx.take_along_axis(ordered, (mx.clip(top_k, 1, V) - 1)[:, None], axis=-1)
    ordered = mx.where(ordered < kth, -mx.inf, ordered)
    probs = mx.softmax(ordered, axis=-1)
    before = mx.cumsum(probs, axis=-1) - probs
    drop = mx.isinf(ordered) | ((before >= top_p[:, None]) & (top_p[:, None] < 1.0))
    return mx.where(mx.take_along_axis(drop, mx.argsort(order, axis=-1), axis=-1), -mx.inf, logits)


def filter_logits(logits: mx.array, top_k: int | None = None, top_p: float | None = None) -> mx.array:
    """filter_rows with one top_k / top_p for every row."""
    B, V = logits.shape
    return filter_rows(logits, mx.full((B,), top_k or V, dtype=mx.int32), mx.full((B,), top_p or 1.0))


def sample_rows(logits: mx.array, rows: dict, sampling: bool = True, filtering: int = -1) -> mx.array:
    """One token per row: argmax where temperature is 0, else Gumbel-max over the filtered logits / temperature."""
    logits = logits.astype(mx.float32)
    greedy = mx.argmax(logits, axis=-1)
    if not sampling:
        return greedy
    hot = rows["temperature"] > 0
    scaled = logits / mx.where(hot, rows["temperature"], 1.0)[:, None]
    if filtering:
        scaled = filter_rows(scaled, rows["top_k"], rows["top_p"])
    noise = -mx.log(-mx.log(uniform(rows["seed"], rows["count"], rows["vocab_hash"])))
    return mx.where(hot, mx.argmax(scaled + noise, axis=-1), greedy)


def decode_step(model, span: int, sampling: bool, filtering: int, state: dict) -> tuple[mx.array, dict]:
    """One token per row at its cache position, as gptkit.torch.generate.decode_step, as a pure function of `state`
    (the cache's arrays and the rows' settings) so that mx.compile can compile it."""
    cache = KVCache.of(list(state["k"]), list(state["v"]), state["pos"], span)
    rows = dict(state)
    rows["hist"] = mx.put_along_axis(state["hist"], state["pos"][:, None], state["tokens"][:, None], axis=1)
    logits = model(state["tokens"][:, None], cache=cache)[:, -1]
    nxt = sample_rows(logits, rows, sampling, filtering).astype(mx.int32)
    rows.update(k=cache.k, v=cache.v, pos=cache.pos, tokens=nxt, count=state["count"] + 1)
    return nxt, rows


class Engine(EngineBase):
    """gptkit.generate.engine.EngineBase on an MLX model; the same API as gptkit.torch.generate.Engine. compile:
    mx.compile the
    decode step (cheap, so on by default)."""

    def __init__(self, model, batch_size: int = 1, *, compile: bool = True, sync_every: int | None = None,
                 context: int | None = None) -> None:
        cfg = model.config
        length = context_length(cfg.block_size, context)
        # a read-back per token costs nothing on a CPU; on the GPU (Apple silicon) steps run ahead between reads
        default_sync = 16 if mx.default_device() == mx.gpu else 1
        super().__init__(length, batch_size, sync_every if sync_every is not None else default_sync, cfg.vocab_size)
        if model.training:
            raise ValueError("the model is in training mode (dropout on); call model.eval() before generating")
        self.model, self.compile, self._steps = model, compile, {}
        cache = model.new_cache(batch_size, length=length)
        B, V = batch_size, cfg.vocab_size
        self.state = {
            "k": cache.k, "v": cache.v, "pos": cache.pos,
            "tokens": mx.zeros((B,), dtype=mx.int32), "hist": mx.zeros((B, length), dtype=mx.int32),
            "temperature": mx.zeros((B,)), "top_k": mx.zeros((B,), dtype=mx.int32), "top_p": mx.ones((B,)),
            "seed": mx.zeros((B,), dtype=mx.uint32), "count": mx.zeros((B,), dtype=mx.uint32),
            "vocab_hash": mix32(mx.arange(V).astype(mx.uint32)),
        }

    def _prefill(self, slots: list[int], prompts: list[list[int]], requests: list[Request], sampling: bool,
                 filtering: int) -> mx.array:
        s, index, names = self.state, mx.array(slots), ("temperature", "top_k", "top_p", "seed")
        temperature, top_k, top_p, seed = zip(*[q.settings(self.model.config.vocab_size) for q in requests])
        seed = [(x ^ (x >> 32)) & MASK32 for x in seed]  # folded to 32 bits, as gptkit.torch.generate.uniform folds it
        for name, values in zip(names, (temperature, top_k, top_p, seed)):
            s[name][index] = mx.array(values, dtype=s[name].dtype)
        s["count"][index] = 0
        T = max(map(len, prompts))
        ids = mx.array([p + [0] * (T - len(p)) for p in prompts], dtype=mx.int32)  # (n, T): right-padded
        s["hist"][index, :T] = ids  # the padding lies beyond each row's length: decode steps overwrite it first
        logits = self._fill(index, ids, mx.array([len(p) for p in prompts], dtype=mx.int32))
        rows = {name: s[name][index] for name in (*names, "count")} | {"vocab_hash": s["vocab_hash"]}
        nxt = sample_rows(logits, rows, sampling, filtering).astype(mx.int32)
        s["tokens"][index], s["count"][index] = nxt, 1
        return nxt

    def _fill(self, index: mx.array, ids: mx.array, lengths: mx.array) -> mx.array:
        """Fill rows `index` (n,) of the cache with ids (n, T) from position 0 (KVCache.fill), each row's position
        then its length (n,); the (n, V) logits at each row's last real token."""
        cache = KVCache.of(self.state["k"], self.state["v"], self.state["pos"], self.block_size)
        logits = self.model(ids, cache=cache.fill(index), logits_at=lengths - 1)[:, -1]
        self.state["pos"][index] = lengths
        return logits

    def _decode(self, span: int, sampling: bool, filtering: int) -> mx.array:
        key = (span, sampling, filtering)
        if key not in self._steps:
            fn = partial(decode_step, self.model, span, sampling, filtering)
            self._steps[key] = mx.compile(fn) if self.compile else fn
        nxt, self.state = self._steps[key](self.state)
        mx.async_eval(nxt, self.state)  # run ahead while the host prepares the next step
        return nxt

    def _slide(self, slots: list[int]) -> None:
        bs, keep, s, index = self.block_size, self.keep, self.state, mx.array(slots)
        window = s["hist"][index, bs - keep + 1 :]
        s["hist"][index, : keep - 1] = window
        s["pos"][index] = 0
        if keep > 1:
            self._fill(index, window, mx.array([keep - 1] * len(slots), dtype=mx.int32))

    def _reset(self, slot: int) -> None:
        self.state["pos"][slot] = 0

    def _fetch(self, handles: list[mx.array]) -> list[int]:
        return mx.concatenate(handles).tolist()


def generate(model, prompt: list[int], max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, stop_token: int | None = None, compile: bool = True
             ) -> list[int]:
    """The ids generated after one prompt (stop token excluded), as gptkit.torch.generate.generate."""
    request = Request(tuple(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                      () if stop_token is None else (stop_token,))
    return generate_ids(Engine(model, 1, compile=compile), [request])[0]
