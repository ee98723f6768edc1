"""Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding"; Chen et
al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling"): a small draft model proposes k
tokens one at a time, the target scores all of them in one forward, and each proposal d is kept with probability
min(1, p(d) / q(d)) (p the target's distribution, q the draft's); at the first rejection the token is drawn from
norm(max(0, p - q)) instead, and when all k are kept the target's next distribution gives one more token free. The
tokens then follow the target's distribution exactly, whatever the draft (a poor draft only lowers the acceptance
rate); at temperature 0 both distributions are one-hot and the result is the target's greedy ids.

p and q are each model's sampling distribution: softmax of the logits / temperature after top-k and top-p, as in
gptkit.torch.generate. The contexts are the engine's (gptkit.generate.engine): a prompt longer than the target's context
is cut to its last tokens, and a full cache slides to its last half, at the same tokens as the engine's, so greedy ids
equal gptkit.torch.generate.generate's past the context too. The draft slides on its own schedule (it only proposes).

Not here: batches (one sequence; the engine batches), compiled steps, MLX, fewer host syncs (a round reads its
draws back one by one). The draws come from a torch.Generator seeded with `seed`: a seed gives repeatable text,
but not the engine's text for that seed (the engine hashes its noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gptkit.generate.engine import Request, context_length
from gptkit.torch.generate import filter_logits


@dataclass
class SpeculativeStats:
    """What speculation did: drafted tokens, how many the target kept, and its forwards (one per round)."""

    proposed: int = 0
    accepted: int = 0
    target_forwards: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    def __add__(self, other: SpeculativeStats) -> SpeculativeStats:
        return SpeculativeStats(self.proposed + other.proposed, self.accepted + other.accepted,
                                self.target_forwards + other.target_forwards)


class _Window:
    """One model's KV cache over the latest tokens of the sequence, `held` on the host by position (batch 1)."""

    def __init__(self, model) -> None:
        self.model, self.length = model, context_length(model.config.block_size)
        self.keep = max(1, self.length // 2)  # as gptkit.generate.engine: keep - 1 tokens stay after a slide
        self.cache = model.new_cache(1, length=self.length)
        self.held: list[int] = []

    @property
    def room(self) -> int:
        return self.length - len(self.held)

    def feed(self, tokens: list[int]) -> torch.Tensor:
        """The logits (T, V) after each of `tokens`, which go into the cache after the held ones."""
        self.cache.pos.fill_(len(self.held))
        self.cache.span = len(self.held) + len(tokens)
        device = self.cache.pos.device
        logits = self.model(torch.tensor([tokens], device=device), cache=self.cache)[0][0]
        self.held += tokens
        return logits

    def reset(self, tokens: list[int]) -> None:
        """Hold `tokens` from position 0 (a prefill; none: an empty cache)."""
        self.held = []
        if tokens:
            self.feed(tokens)

    def slide(self) -> None:
        """The engine's slide: keep the last keep - 1 held tokens."""
        self.reset(self.held[len(self.held) - self.keep + 1 :] if self.keep > 1 else [])


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """The sampling distribution (..., V) of logits (..., V), float32: one-hot argmax at temperature 0.

    Example: logits [0., 0., 1.], temperature 0 -> [0., 0., 1.]; logits [0., 0.], temperature 1 -> [0.5, 0.5]
    """
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    flat = logits.reshape(-1, logits.size(-1)) / temperature
    return torch.softmax(filter_logits(flat, top_k, top_p), dim=-1).reshape(logits.shape)


def accept(p: torch.Tensor, q: torch.Tensor, drafts: list[int], g: torch.Generator) -> tuple[int, int]:
    """Speculative sampling's verdict: (how many drafts are kept, the token after them). p (k + 1, V): the target's
    distributions after the context and after each draft; q (k, V): the draft's, from which drafts[i] was drawn.

    Example (greedy, one-hot rows): p argmax [3, 1, 4], q argmax [3, 2] -> drafts [3, 2] -> (1, 1)
    """
    for i, d in enumerate(drafts):
        if torch.rand((), generator=g, device=g.device) * q[i, d] < p[i, d]:  # kept with probability min(1, p/q)
            continue
        residual = (p[i] - q[i]).clamp(min=0)  # what p has beyond q: the rejected mass goes there
        if residual.sum() <= 0:  # p == q up to rounding: a rejection is then a rounding event; draw from p
            residual = p[i]
        return i, int(torch.multinomial(residual, 1, generator=g))
    k = len(drafts)
    return k, int(torch.multinomial(p[k], 1, generator=g))


def _check(target, draft, k: int) -> None:
    if target.training or draft.training:
        raise ValueError("a model is in training mode (dropout on); call .eval() on the target and the draft")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"draft and target vocab sizes differ ({draft.config.vocab_size} vs "
                         f"{target.config.vocab_size}): the draft must use the target's tokenizer")
    if next(target.parameters()).device != next(draft.parameters()).device:
        raise ValueError("the draft and the target must be on one device; move the draft with .to(device)")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (tokens drafted per round) must be an int >= 1, got {k!r}")


@torch.no_grad()
def speculative_generate(target, draft, prompt: list[int], max_new_tokens: int, *, k: int = 4,
                         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                         seed: int = 0, stop_token: int | None = None) -> tuple[list[int], SpeculativeStats]:
    """The ids the target generates after `prompt` (the stop token, if reached, not included), drafted by `draft`
    k at a time, and the stats. Both models in eval mode, on one device, with one vocabulary."""
    Request(tuple(prompt), max_new_tokens, temperature, top_k, top_p, seed)  # the engine's checks of the arguments
    _check(target, draft, k)
    g = torch.Generator(next(target.parameters()).device).manual_seed(seed)
    t, d, stats = _Window(target), _Window(draft), SpeculativeStats()
    seq = list(prompt)[-t.length :]  # the engine's crop: the target sees at most its context
    t.reset(seq[:-1])  # the caches hold all but the last token, which each round feeds first
    drafted_upto, out = 0, []
    while len(out) < max_new_tokens:
        if t.room < 1:
            t.slide()
        n = min(k, t.room - 1, max_new_tokens - len(out) - 1)  # drafts this round: they and the pending fit
        feed = seq[drafted_upto:]  # what the draft has not seen yet, the pending token last
        if n and d.room < len(feed) + n - 1:
            d.reset([])  # too little room: restart from the latest tokens
            feed = seq[-d.keep :]
            n = min(n, d.room - len(feed) + 1)
        drafts, q = _draft(d, feed, n, temperature, top_k, top_p, g)
        p = distribution(t.feed(seq[-1:] + drafts), temperature, top_k, top_p)  # (n + 1, V)
        kept, nxt = accept(p, q, drafts, g)
        stats.proposed += n
        stats.accepted += kept
        stats.target_forwards += 1
        t.held = t.held[: len(t.held) - n + kept]  # the rejected drafts' keys lie beyond and get overwritten
        if n:
            d.held = d.held[: len(d.held) - max(0, n - 1 - kept)]
            drafted_upto = len(seq) + min(kept, n - 1)
        new = drafts[:kept] + [nxt]
        seq += new
        if stop_token in new:
            return out + new[: new.index(stop_token)], stats
        out += new
    return out, stats


def _draft(d: _Window, feed: list[int], n: int, temperature: float, top_k, top_p, g) -> tuple[list[int], torch.Tensor]:
    """n tokens drawn from the draft one at a time after `feed` (its unseen tokens), and their distributions (n, V)."""
    if not n:
        return [], torch.empty(0)
    logits, drafts, q = d.feed(feed)[-1], [], []
    for i in range(n):
        q.append(distribution(logits, temperature, top_k, top_p))
        drafts.append(int(torch.multinomial(q[-1], 1, generator=g)))
        if i < n - 1:
            logits = d.feed(drafts[-1:])[-1]
    return drafts, torch.stack(q)
