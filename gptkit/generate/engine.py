"""The generation engine's bookkeeping, the same for every backend: requests in slots, each row's cache position,
the window slide past block_size, chunks of decode steps between two reads, stop tokens and max tokens.

An engine holds `batch_size` rows ("slots"). `add(request)` prefills a request's prompt into a free slot, `step()`
runs decode steps for every slot at once and returns what each request gained, and a request that finishes (or is
cancelled) frees its slot for the next one: requests join a running batch as others leave (continuous batching).
Requests that join at once (the start of `run`, rows freed at one read-back: `join`) are prefilled together, a few
forwards of right-padded rows instead of one forward each (`prefill_groups` says which rows share one).
`run(requests)` does that loop for a list. The tensor work (prefill, one decode step, the slide's re-prefill, the
read-back) is a backend's: gptkit.torch.generate (PyTorch) and gptkit.mlx.generate (MLX) implement the `_`-hooks below.

Host syncs: a decode step reads nothing back; the host knows every row's position without looking (each step adds
one), so slides and the attention span are decided on the host. Tokens come back in one transfer per `sync_every`
steps, which is also when stop tokens are seen (a row that stopped early in a chunk wastes the chunk's rest).

Past the context: the cache holds `block_size` positions, the model's context (at most MAX_CONTEXT unless asked:
a long-context model's cache would otherwise take gigabytes per row). When a row's cache holds block_size tokens, its
window slides: the cache is refilled with the last keep - 1 = block_size // 2 - 1 tokens (one forward of those tokens,
from position 0) and the next token goes after them. From then on the model sees between block_size // 2 and block_size
of the latest tokens, at positions counted from the window's start (as an uncached forward of that window would), and
the window slides again when it is full: one re-prefill per block_size // 2 tokens, never a full recompute per token.
(nanoGPT's generate always feeds the last block_size tokens, recomputing the whole window for every token.)

Not here: tensors (this module imports neither torch nor mlx), text (gptkit.generate.text).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gptkit.config import check_sampling

MIN_SPAN = 16  # the shortest attention span compiled; spans are powers of two up to block_size
MAX_CONTEXT = 4096  # the cache holds at most this many positions by default (Qwen3 folders say 40,960)
# A batched prefill pads each row to its group's longest. Up to about PREFILL_FREE tokens a forward costs one read of
# the weights whatever the tokens (a GPU reaches its arithmetic limit near 300 tokens per forward: ~1000 TFLOP/s
# over ~3 TB/s at 2 FLOPs per 2-byte weight; a CPU core far sooner), so padding there is free; past it, a padded
# token costs what a real one does, so a row joins only a group whose longest is at most twice its length (padding
# at most doubles the group's work, while each group saved is one more read of the weights). PREFILL_TOKENS caps a
# forward's padded tokens, and so its activations (B x T x 4C for the MLP, B x heads x T^2 on a math attention path).
PREFILL_FREE = 128
PREFILL_TOKENS = 8192
MASK32 = 0xFFFFFFFF
MIX32 = (0x7FEB352D, 0x846CA68B)  # lowbias32's multipliers (C. Wellons' hash-prospector), for every backend


def mix32(x: int) -> int:
    """A 32-bit integer hash (lowbias32): the backends' samplers compute it on tensors; this is the reference.

    Example: mix32(1) -> 1753845952
    """
    x &= MASK32
    x ^= x >> 16
    x = (x * MIX32[0]) & MASK32
    x ^= x >> 15
    x = (x * MIX32[1]) & MASK32
    return x ^ (x >> 16)


@dataclass(frozen=True)
class Request:
    """One generation: prompt ids, how many tokens at most, sampling (temperature 0 = greedy), a seed (the same
    request gives the same tokens alone or in any batch), and the ids that end it (not returned)."""

    prompt: Sequence[int]
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    stop_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_k, self.top_p)
        if not self.prompt:
            raise ValueError("a request needs at least one prompt token (e.g. the tokenizer's <|endoftext|>)")
        if not all(isinstance(t, int) and t >= 0 for t in self.prompt):
            raise ValueError("prompt ids must be non-negative ints")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {self.max_new_tokens!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an int from 0 to 2**63 - 1, got {self.seed!r}")

    def settings(self, vocab_size: int) -> tuple[float, int, float, int]:
        """(temperature, top_k, top_p, seed) as a backend's per-row state holds them: top_k vocab_size and top_p 1
        are off. Example: Request((1,), top_k=3, seed=2).settings(10) -> (1.0, 3, 1.0, 2)"""
        return self.temperature, min(self.top_k or vocab_size, vocab_size), self.top_p or 1.0, self.seed


@dataclass
class Update:
    """What a request gained in one step: new token ids, and why it finished ("stop": a stop token,
    "length": max_new_tokens), or None while it runs."""

    key: object
    tokens: list[int]
    finish: str | None = None


@dataclass
class _Slot:
    key: object
    request: Request
    sampled: int = 0  # tokens sampled on the device so far (some not read back yet)
    emitted: int = 0  # tokens accounted for on the host (returned, or the stop token)
    first: object = None  # the prefill's token, until the next read-back
    out: list[int] = field(default_factory=list)


def context_length(block_size: int, asked: int | None = None) -> int:
    """The positions an engine's cache holds: `asked` (at most block_size), else block_size capped at MAX_CONTEXT.

    Example: context_length(1024) -> 1024; context_length(40960) -> 4096; context_length(1024, 256) -> 256
    """
    if asked is not None and not 2 <= asked <= block_size:
        raise ValueError(f"context must be from 2 to the model's block_size {block_size}, got {asked}")
    return asked or min(block_size, MAX_CONTEXT)


def prefill_groups(lengths: Sequence[int], budget: int = PREFILL_TOKENS) -> list[list[int]]:
    """Indices of prompts of these lengths grouped for batched prefill, longest first: a group's rows are padded to
    its first (longest) row, and a row joins the group while it is at least half that long (or the group's padded
    tokens stay within PREFILL_FREE) and the padded tokens stay within `budget` (a row longer than that is alone).

    Example: prefill_groups([3, 1, 300, 200, 290]) -> [[2, 4, 3], [0, 1]]
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups:
            longest, n = lengths[groups[-1][0]], len(groups[-1]) + 1
            close = 2 * lengths[i] >= longest or n * longest <= PREFILL_FREE
            if close and n * longest <= budget:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def span_for(length: int, block_size: int) -> int:
    """The attention span for rows of at most `length` positions: a power of two (>= MIN_SPAN), at most block_size.

    Example: span_for(100, 1024) -> 128; span_for(3, 1024) -> 16; span_for(900, 1000) -> 1000
    """
    return min(block_size, max(MIN_SPAN, 1 << max(0, length - 1).bit_length()))


class EngineBase:
    """Slots, positions and chunks; a backend subclass provides the tensor hooks (_prefill, _decode, _slide,
    _reset, _fetch). See the module docstring."""

    def __init__(self, block_size: int, batch_size: int, sync_every: int, vocab_size: int | None = None) -> None:
        if batch_size < 1 or sync_every < 1:
            raise ValueError(f"batch_size and sync_every must be >= 1, got {batch_size} and {sync_every}")
        self.block_size, self.batch_size, self.sync_every = block_size, batch_size, sync_every
        self.vocab_size = vocab_size  # prompt ids must lie below it (None: not checked)
        self.keep = max(1, block_size // 2)  # tokens of context right after a slide (the fed token included)
        self.slots: list[_Slot | None] = [None] * batch_size
        self.pos = [0] * batch_size  # each row's cache position, as the device has it
        self.exact_span, self.dense = False, False  # a backend that runs eagerly may read spans of any length

    # -- the backend's tensor work ---------------------------------------------------------------------------

    def _prefill(self, slots: list[int], prompts: list[list[int]], requests: list[Request], sampling: bool,
                 filtering: int):
        """Fill rows `slots` with the prompts (positions 0.., in one forward of the prompts right-padded to the
        longest), set their sampling state, sample each row's first token (returned as one (n,) device handle, not
        read back). sampling, filtering: as for _decode, for these requests."""
        raise NotImplementedError

    def _decode(self, span: int, sampling: bool, filtering: int):
        """One decode step for every row: feed each row's last token, sample the next (returned as a (B,) handle).
        filtering: 0 no row filters, k > 0 every sampling row has a top-k of at most k (a power of two) and none a
        top-p, -1 else.
        With `exact_span` the span is exactly the longest row, and `dense` says every row is at the same position."""
        raise NotImplementedError

    def _slide(self, slots: list[int]) -> None:
        """Refill rows `slots` with their last keep - 1 tokens from position 0, in one forward (see the module
        docstring)."""
        raise NotImplementedError

    def _reset(self, slot: int) -> None:
        """Row `slot`'s cache position back to 0 (a free row keeps stepping with the rest)."""
        raise NotImplementedError

    def _fetch(self, handles: list) -> list[int]:
        """The token ids of the 1-D handles, concatenated, in one transfer."""
        raise NotImplementedError

    def _read(self, handles: list) -> list[list[int]]:
        """The token ids of each handle (one transfer, split back by the handles' lengths)."""
        if not handles:
            return []
        flat, out = self._fetch(handles), []
        for h in handles:
            out.append(flat[: len(h)])
            flat = flat[len(h) :]
        return out

    # -- the schedule -----------------------------------------------------------------------------------------

    @property
    def free(self) -> int:
        return self.slots.count(None)

    @property
    def busy(self) -> bool:
        return self.free < self.batch_size

    def add(self, request: Request, key: object = None) -> int:
        """Prefill `request` into a free slot (there must be one: see `free`); its updates carry `key`."""
        return self.join([(key, request)])[0]

    def join(self, items: Sequence[tuple[object, Request]]) -> list[int]:
        """Prefill (key, request) pairs into free slots (there must be enough: see `free`), batched as
        `prefill_groups` says; their slots, in order."""
        if len(items) > self.free:
            raise ValueError(f"{len(items)} requests but {self.free} free slots; join at most `free` at once")
        for _, request in items:  # an id past the embedding would fail deep in the model (on CUDA: a device assert)
            if self.vocab_size is not None and max(request.prompt) >= self.vocab_size:
                raise ValueError(f"prompt id {max(request.prompt)} is outside the model's vocabulary (vocab_size "
                                 f"{self.vocab_size}); encode the prompt with the model's own tokenizer")
        slots, prompts = [], []
        for key, request in items:
            slot = self.slots.index(None)
            self.slots[slot] = _Slot(key, request)
            slots.append(slot)
            prompts.append(list(request.prompt)[-self.block_size :])  # longer: the model sees the last block_size
        todo = [i for i, (_, r) in enumerate(items) if r.max_new_tokens]
        try:
            for group in prefill_groups([len(prompts[i]) for i in todo]):
                rows = [todo[g] for g in group]
                requests = [items[i][1] for i in rows]
                first = self._prefill([slots[i] for i in rows], [prompts[i] for i in rows], requests,
                                      *_sampling_mode(requests))
                for j, i in enumerate(rows):
                    entry = self.slots[slots[i]]
                    entry.first, entry.sampled = first[j : j + 1], 1
                    self.pos[slots[i]] = len(prompts[i])
        except BaseException:  # a failed prefill (out of memory, say) leaves no half-joined request behind
            for slot in slots:
                self._free(slot)
            raise
        return slots

    def cancel(self, key: object) -> None:
        """Stop the request of `key` and free its slot (a disconnected client, a stop string found in its text)."""
        for slot, entry in enumerate(self.slots):
            if entry is not None and entry.key == key:
                self._free(slot)

    def step(self) -> list[Update]:
        """Decode steps for all rows (up to sync_every, fewer when every request needs fewer), one read-back;
        an Update for each request that gained tokens or finished."""
        active = [(b, s) for b, s in enumerate(self.slots) if s is not None]
        if not active:
            return []
        n = min(self.sync_every, max(s.request.max_new_tokens - s.sampled for _, s in active))
        sampling, filtering = _sampling_mode([s.request for _, s in active])
        handles = []
        for _ in range(n):
            self._make_room()
            longest = max(self.pos) + 1
            self.dense = self.exact_span and min(self.pos) + 1 == longest
            span = longest if self.exact_span else span_for(longest, self.block_size)
            handles.append(self._decode(span, sampling, filtering))
            self.pos = [p + 1 for p in self.pos]
            for _, s in active:
                s.sampled += 1
        firsts = [(b, s) for b, s in active if s.first is not None]
        values = self._read([s.first for _, s in firsts] + handles)
        for b, s in firsts:
            s.out.append(values.pop(0)[0])
            s.first = None
        for b, s in active:
            s.out.extend(row[b] for row in values)
        return [self._account(b, s) for b, s in active]

    def run(self, requests: Iterable[Request]) -> Iterator[Update]:
        """Every request through the engine, up to batch_size at once, a new one joining whenever a slot frees;
        an update's key is its request's index. The caller may `cancel(key)` between updates."""
        pending = deque(enumerate(requests))
        while pending or self.busy:
            if pending and self.free:
                self.join([pending.popleft() for _ in range(min(self.free, len(pending)))])
            yield from self.step()

    def _make_room(self) -> None:
        """Before a decode step: the full rows slide their windows, together (a free one just restarts at 0)."""
        full = [b for b, p in enumerate(self.pos) if p >= self.block_size]
        sliding = [b for b in full if self.slots[b] is not None]
        if sliding:
            self._slide(sliding)
        for b in full:
            if b in sliding:
                self.pos[b] = self.keep - 1
            else:
                self._reset(b)
                self.pos[b] = 0

    def _account(self, slot: int, s: _Slot) -> Update:
        """The tokens of s.out up to its stop token or max_new_tokens; frees the slot when finished."""
        r, tokens, finish = s.request, [], None
        for t in s.out:
            if s.emitted == r.max_new_tokens:
                break
            s.emitted += 1
            if t in r.stop_tokens:
                finish = "stop"
                break
            tokens.append(t)
        s.out = []
        if finish is None and s.emitted == r.max_new_tokens:
            finish = "length"
        if finish:
            self._free(slot)
        return Update(s.key, tokens, finish)

    def _free(self, slot: int) -> None:
        self.slots[slot] = None
        self._reset(slot)
        self.pos[slot] = 0


def _sampling_mode(requests: list[Request]) -> tuple[bool, int]:
    """(any row samples, the filtering level of EngineBase._decode) for these requests."""
    hot = [r for r in requests if r.temperature > 0]
    if not any(r.top_k or r.top_p for r in hot):
        return bool(hot), 0
    if all(r.top_k and not r.top_p for r in hot):  # a power of two: few compiled variants (rows cut at their own k)
        return True, 1 << (max(r.top_k for r in hot) - 1).bit_length()
    return True, -1


def generate_ids(engine: EngineBase, requests: Sequence[Request]) -> list[list[int]]:
    """Each request's generated ids (stop token excluded), in request order."""
    out: list[list[int]] = [[] for _ in requests]
    for u in engine.run(requests):
        out[u.key].extend(u.tokens)
    return out
