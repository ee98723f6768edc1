"""The generation engine in PyTorch: a static KV cache (gptkit.torch.model.KVCache), a one-token decode step with fixed
shapes (torch.compile, with CUDA graphs on CUDA), batches of requests with their own lengths and settings.

`Engine(model, batch_size)` is gptkit.generate.engine.EngineBase (slots, positions, the window slide, chunks of steps
between read-backs) with the tensor work done here. `generate(model, prompt, n, ...)` is the one-prompt shortcut.

Sampling, per row: temperature (0 = greedy), top-k, top-p, a seed. The draw is the Gumbel-max trick,
argmax(logits / T + g), with g = -log(-log(u)) and u a hash of (seed, token number, vocab id) (`uniform`): a
row's tokens depend on its own request only, never on the other rows of the batch or on earlier requests (what
a server that batches users needs), there is no torch.Generator to thread through, and the step stays one graph.
The hash is computed the same way in MLX, so both backends draw the same noise.

Not here: scheduling (gptkit.generate.engine), text and stop strings (gptkit.generate.text), loading checkpoints.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gptkit.generate.engine import MASK32, MIX32, EngineBase, Request, context_length, generate_ids


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for x in [0, 2^32) held in int64: c is split in 16-bit halves so no product overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """gptkit.generate.engine.mix32 on an int64 tensor of uint32 values. Example: mix32(tensor([1])) -> [1753845952]"""
    x = x ^ (x >> 16)
    x = _mul32(x, MIX32[0])
    x = x ^ (x >> 15)
    x = _mul32(x, MIX32[1])
    return x ^ (x >> 16)


def uniform(seed: torch.Tensor, count: torch.Tensor, vocab_hash: torch.Tensor) -> torch.Tensor:
    """(B, V) numbers in (0, 1), a function of each row's seed (B,), token number count (B,) and the vocab id
    (vocab_hash = mix32(arange(V)), or (B, k) of the ids wanted): 24 bits of mix32(mix32(mix32(seed) ^ count) ^
    vocab_hash)."""
    row = mix32(mix32((seed ^ (seed >> 32)) & MASK32) ^ (count & MASK32))  # (B,)
    bits = mix32(row[:, None] ^ (vocab_hash if vocab_hash.dim() == 2 else vocab_hash[None, :])) >> 8  # 24 bits
    return (bits.float() + 0.5) * 2.0**-24


def filter_rows(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Logits (B, V) with everything outside each row's top-k (ties at the k-th kept) and then outside its top-p
    nucleus (the smallest set of most likely tokens whose probabilities reach top_p, at least one) set to -inf.
    top_k (B,) >= V and top_p (B,) >= 1 leave a row alone."""
    V = logits.size(-1)
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    kth = ordered.gather(-1, (top_k.clamp(1, V) - 1)[:, None])  # (B, 1)
    ordered = ordered.masked_fill(ordered < kth, float("-inf"))
    probs = F.softmax(ordered, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # the probability mass ranked above each token
    drop = torch.isinf(ordered) | ((before >= top_p[:, None]) & (top_p[:, None] < 1.0))
    return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """filter_rows with one top_k / top_p for every row.

    Example: logits [[3., 2., 1., 0.]], top_k=2 -> [[3., 2., -inf, -inf]]
    """
    B, V = logits.shape
    k = torch.full((B,), top_k if top_k else V, dtype=torch.long, device=logits.device)
    p = torch.full((B,), top_p if top_p else 1.0, dtype=torch.float32, device=logits.device)
    return filter_rows(logits, k, p)


def sample_rows(logits: torch.Tensor, rows: _Rows, sampling: bool = True, filtering: int = -1) -> torch.Tensor:
    """One token per row of logits (B, V) with each row's settings (rows may be a slice of the engine's):
    argmax where temperature is 0, else Gumbel-max over the filtered logits / temperature. `sampling` False
    (no row samples) skips the draw; filtering 0 (no row has top-k/top-p) skips the filter, k > 0 (every
    sampling row has a top-k, at most k, and none a top-p) draws among the k best only (noise for k ids, not V).
    Both keep the tokens tied with a row's k-th logit, except that the fast path sees only its k candidates: a tie
    running past them (rare in fp32, less so in bf16) is cut there, so such a row may differ from the same request in
    a batch whose other rows use top-p (the full filter)."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    if not sampling:
        return greedy
    hot = rows.temperature > 0
    scaled = logits / torch.where(hot, rows.temperature, 1.0)[:, None]
    if filtering > 0:
        vals, ids = torch.topk(scaled, min(filtering, scaled.size(-1)), dim=-1)  # (B, k), best first
        kth = vals.gather(-1, (rows.top_k.clamp(1, vals.size(-1)) - 1)[:, None])
        vals = vals.masked_fill(vals < kth, float("-inf"))
        noise = -torch.log(-torch.log(uniform(rows.seed, rows.count, rows.vocab_hash[ids])))
        return torch.where(hot, ids.gather(-1, (vals + noise).argmax(dim=-1, keepdim=True))[:, 0], greedy)
    if filtering:
        scaled = filter_rows(scaled, rows.top_k, rows.top_p)
    noise = -torch.log(-torch.log(uniform(rows.seed, rows.count, rows.vocab_hash)))
    return torch.where(hot, (scaled + noise).argmax(dim=-1), greedy)


@dataclass
class _Rows:
    """The engine's per-row state on the device, (B,) unless noted."""

    tokens: torch.Tensor  # each row's last sampled token: the next step's input
    hist: torch.Tensor  # (B, block_size): the tokens in each row's cache, by position (the slide refills from it)
    temperature: torch.Tensor  # float32, 0 = greedy
    top_k: torch.Tensor  # long, vocab_size = off
    top_p: torch.Tensor  # float32, 1 = off
    seed: torch.Tensor  # long
    count: torch.Tensor  # long: tokens sampled so far, the noise's counter
    vocab_hash: torch.Tensor  # (V,) long: mix32(arange(V)), shared by all rows

    @classmethod
    def new(cls, batch_size: int, block_size: int, vocab_size: int, device) -> _Rows:
        def longs(n=batch_size):
            return torch.zeros(n, dtype=torch.long, device=device)

        floats = torch.zeros(batch_size, dtype=torch.float32, device=device)
        hist = torch.zeros(batch_size, block_size, dtype=torch.long, device=device)
        vocab = mix32(torch.arange(vocab_size, dtype=torch.long, device=device))
        return cls(longs(), hist, floats, longs(), floats.clone(), longs(), longs(), vocab)

    def take(self, index: torch.Tensor) -> _Rows:
        """Rows `index` (n,) as a batch of n (copies, for reading)."""
        return _Rows(*(t[index] for t in self.tensors()), self.vocab_hash)

    def tensors(self) -> list[torch.Tensor]:
        return [self.tokens, self.hist, self.temperature, self.top_k, self.top_p, self.seed, self.count]


def decode_step(model, cache, rows: _Rows, sampling: bool, filtering: int) -> torch.Tensor:
    """Feed each row's last token at its cache position and sample the next: (B,). Fixed shapes for a given
    cache.span, no host sync: this is the function torch.compile compiles."""
    rows.hist.scatter_(1, cache.pos[:, None], rows.tokens[:, None])
    logits = model(rows.tokens[:, None], cache=cache)[0][:, -1]  # (B, V)
    nxt = sample_rows(logits, rows, sampling, filtering)
    rows.count.add_(1)
    rows.tokens.copy_(nxt)
    return nxt


class Engine(EngineBase):
    """gptkit.generate.engine.EngineBase on a PyTorch model (in eval mode). compile: "auto" compiles the decode step on
    CUDA (mode="reduce-overhead": CUDA graphs), True compiles anywhere, False never. sync_every: decode steps between
    read-backs (default 1 on a CPU, where a read-back costs nothing, 16 elsewhere; 1 when streaming). context: the
    positions the cache holds (default the model's block_size, at most gptkit.generate.engine.MAX_CONTEXT)."""

    def __init__(self, model, batch_size: int = 1, *, compile: bool | str = "auto", sync_every: int | None = None,
                 cache_dtype: torch.dtype | None = None, context: int | None = None) -> None:
        if model.training:
            raise ValueError("the model is in training mode (dropout on); call model.eval() before generating")
        cfg, p = model.config, next(model.parameters())
        self.device = p.device
        length = context_length(cfg.block_size, context)
        sync_every = sync_every if sync_every is not None else 1 if self.device.type == "cpu" else 16
        super().__init__(length, batch_size, sync_every, cfg.vocab_size)
        self.model = model
        self.cache = model.new_cache(batch_size, cache_dtype, length)
        self.rows = _Rows.new(batch_size, length, cfg.vocab_size, self.device)
        self._step, self._compiled = decode_step, False
        if compile is True or (compile == "auto" and self.device.type == "cuda"):
            self._compile()
        else:  # eager: attention reads exactly the filled slots, and no mask when every row is at one position
            self.exact_span = True

    def _compile(self, graphs: bool | None = None) -> None:
        """Compile the decode step; graphs (default: on CUDA) asks for CUDA graphs (mode="reduce-overhead"), whose
        replays need every tensor the step reads or writes at a fixed address (on a CPU inductor skips the graphs
        and the rest is the same: how the tests run this branch without a GPU)."""
        mode = None
        if graphs if graphs is not None else self.device.type == "cuda":
            mode = "reduce-overhead"  # CUDA graphs: the state the graph writes must keep its addresses
            for t in self.cache.tensors() + self.rows.tensors():
                torch._dynamo.mark_static_address(t)
        # One graph per (span, sampling, filtering, batch): up to ~7 spans x a few sampling modes, more than dynamo's
        # default of 8 recompiles, past which the step would fall back to eager. dynamic=False: exact shapes (what
        # CUDA graphs want), never a dynamic-shape graph after the second span.
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, 64)
        self._step, self._compiled = torch.compile(decode_step, mode=mode, fullgraph=True, dynamic=False), True
        self.exact_span = False  # spans in powers of two: a few graphs, not one per length

    def _tensor(self, values, dtype=torch.long) -> torch.Tensor:
        """values as a tensor on the engine's device; to a GPU from pinned memory, without a host sync."""
        if self.device.type != "cuda":
            return torch.tensor(values, dtype=dtype, device=self.device)
        return torch.tensor(values, dtype=dtype).pin_memory().to(self.device, non_blocking=True)

    @torch.no_grad()
    def _prefill(self, slots: list[int], prompts: list[list[int]], requests: list[Request], sampling: bool,
                 filtering: int) -> torch.Tensor:
        r, index = self.rows, self._tensor(slots)
        temperature, top_k, top_p, seed = zip(*[q.settings(self.model.config.vocab_size) for q in requests])
        r.temperature[index], r.top_p[index] = (self._tensor(x, torch.float32) for x in (temperature, top_p))
        r.top_k[index], r.seed[index], r.count[index] = self._tensor(top_k), self._tensor(seed), 0
        T = max(map(len, prompts))
        ids = self._tensor([p + [0] * (T - len(p)) for p in prompts])  # (n, T): right-padded to the longest
        r.hist[index, :T] = ids  # the padding lies beyond each row's length: decode steps overwrite it first
        logits = self._fill(index, ids, self._tensor([len(p) for p in prompts]))
        nxt = sample_rows(logits, r.take(index), sampling, filtering)
        r.count[index], r.tokens[index] = 1, nxt
        return nxt

    def _fill(self, index: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Fill rows `index` (n,) of the cache with ids (n, T) from position 0 (gptkit.torch.model.KVCache.fill), each
        row's position then its length (n,); the (n, V) logits at each row's last real token."""
        logits = self.model(ids, cache=self.cache.fill(index), logits_at=lengths - 1)[0][:, -1]
        self.cache.pos[index] = lengths
        return logits

    @torch.no_grad()
    def _decode(self, span: int, sampling: bool, filtering: int) -> torch.Tensor:
        self.cache.span, self.cache.dense = span, self.dense
        if not self._compiled:
            return decode_step(self.model, self.cache, self.rows, sampling, filtering)
        try:
            return self._step(self.model, self.cache, self.rows, sampling, filtering).clone()  # graphs reuse outputs
        except Exception as e:  # noqa: BLE001 -- a compiler failure must not lose the user's generation
            print(f"gptkit: notice: the compiled decode step failed ({type(e).__name__}: {e}); decoding eagerly",
                  file=sys.stderr)
            self._step, self._compiled, self.exact_span = decode_step, False, True
            return decode_step(self.model, self.cache, self.rows, sampling, filtering)

    @torch.no_grad()
    def _slide(self, slots: list[int]) -> None:
        bs, keep, r, index = self.block_size, self.keep, self.rows, self._tensor(slots)
        r.hist[index, : keep - 1] = r.hist[index, bs - keep + 1 :]  # an indexed read: a copy, so no overlap
        self.cache.pos[index] = 0
        if keep > 1:
            self._fill(index, r.hist[index, : keep - 1], self._tensor([keep - 1] * len(slots)))

    def _reset(self, slot: int) -> None:
        self.cache.pos[slot] = 0

    def _fetch(self, handles: list[torch.Tensor]) -> list[int]:
        return torch.cat(handles).tolist()


def generate(model, prompt: list[int], max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, stop_token: int | None = None, compile: bool | str = False
             ) -> list[int]:
    """The ids generated after one prompt (the stop token, if reached, not included). The model must be in eval mode."""
    request = Request(tuple(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                      () if stop_token is None else (stop_token,))
    return generate_ids(Engine(model, 1, compile=compile), [request])[0]
