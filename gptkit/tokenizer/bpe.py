"""Byte-pair encoding on integers: pair counts, merges, training and rank-based encoding.

This module is the algorithm only. It knows nothing about text, regex splitting or special tokens
(that is `gptkit.tokenizer.byte_level`), and it imports nothing outside the standard library.

Training works on a "word count": each unique chunk of the corpus (as bytes) with how often it occurs.
Two trainers give identical merges:

- `train_naive` is the lecture's loop: count every pair, merge the best one everywhere, repeat.
  It is O(corpus x merges) and kept because it is easy to read and to trust.
- `train_fast` counts pairs once, then after each merge updates only the counts of the pairs next to
  the merged one, in only the words that contain it, and picks the next pair from a lazy max-heap.

Tie-break rule (both trainers): the pair with the highest count wins; among equal counts, the smallest
pair `(left id, right id)` in lexicographic order wins. Hugging Face `tokenizers` breaks ties the same way.

Every token's bytes are unique. When the best pair's bytes already exist as a token (the same string
reached through another split, e.g. "a"+"bc" after "ab"+"c"), the pair is merged into that existing id
in the training words and no new token is made. This keeps the vocabulary a proper bytes -> rank map,
which is what tiktoken's encoder (and so `encode` here) needs.

Encoding follows tiktoken exactly: within a piece, repeatedly merge the adjacent pair whose concatenated
bytes have the lowest rank (leftmost on ties), until no adjacent pair is a token.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable

# Pieces longer than this are encoded with a heap (O(n log n)) instead of the quadratic scan.
_LONG_PIECE = 64


def get_stats(ids: list[int], counts: dict | None = None, freq: int = 1) -> dict:
    """Count consecutive pairs in `ids`, each weighted by `freq`, into `counts`.

    Example: ids=[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + freq
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `ids` (left to right) with `idx`.

    Example: ids=[1, 2, 3, 1, 2], pair=(1, 2), idx=4 -> [4, 3, 4]
    """
    a, b = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _best_pair(stats: dict) -> tuple[int, int]:
    """Highest count, then smallest pair. Example: {(5, 1): 2, (3, 9): 2, (1, 1): 1} -> (3, 9)"""
    return min(stats, key=lambda p: (-stats[p], p))


class _Vocab:
    """Token bytes by id, and the reverse index, starting from the 256 single bytes."""

    def __init__(self) -> None:
        self.tokens = [bytes([i]) for i in range(256)]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def add(self, pair: tuple[int, int]) -> tuple[int, bool]:
        """Return (id of the merged bytes, whether it is a new token)."""
        new = self.tokens[pair[0]] + self.tokens[pair[1]]
        idx = self.index.get(new)
        if idx is not None:
            return idx, False
        idx = len(self.tokens)
        self.tokens.append(new)
        self.index[new] = idx
        return idx, True


def train_naive(word_counts: Iterable[tuple[bytes, int]], vocab_size: int) -> list[tuple[int, int]]:
    """The lecture's BPE loop. Returns the merges; merge i makes token 256 + i.

    Example: [(b"aaabdaaabac", 1)], vocab_size=259 -> [(97, 97), (97, 98), (256, 257)]
    (Wikipedia's example: aa -> Z, ab -> Y, ZY -> X; (a, b) beats (Z, a) at count 2 by the tie-break)
    """
    words = [(list(w), f) for w, f in word_counts]
    vocab = _Vocab()
    merges = []
    while len(vocab.tokens) < vocab_size:
        stats: dict = {}
        for ids, freq in words:
            get_stats(ids, stats, freq)
        if not stats:
            break
        pair = _best_pair(stats)
        idx, is_new = vocab.add(pair)
        if is_new:
            merges.append(pair)
        words = [(merge(ids, pair, idx), freq) for ids, freq in words]
    return merges


def _merge_word(word, pair, idx, freq, wi, delta, where):
    """Merge `pair` -> `idx` in one training word, recording the pair-count changes next to each merge.

    The merged pair's own count is not tracked in `delta` (the caller drops it). Pairs that gain a
    count get `wi` added to their `where` set. Example: word=[1, 2, 1, 2], pair=(1, 2), idx=9, freq=1
    -> [9, 9], delta {(2, 1): -1, (9, 1): 0, (9, 9): +1}.
    """
    a, b = pair
    out = []
    i, n = 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            if out:
                x = out[-1]
                delta[(x, a)] -= freq
                delta[(x, idx)] += freq
                where[(x, idx)].add(wi)
            if i + 2 < n:
                y = word[i + 2]
                delta[(b, y)] -= freq
                delta[(idx, y)] += freq
                where[(idx, y)].add(wi)
            out.append(idx)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_fast(
    word_counts: Iterable[tuple[bytes, int]],
    vocab_size: int,
    on_merge: Callable[[int], None] | None = None,
) -> list[tuple[int, int]]:
    """BPE training with incremental pair counts and a lazy max-heap; same merges as `train_naive`.

    `on_merge(n)` is called after each merge step with the number of new tokens made (0 or 1), for a
    progress bar. Stops early, returning fewer merges, when no pair is left to merge.
    """
    words: list[list[int]] = []
    freqs: list[int] = []
    for w, f in word_counts:
        if len(w) >= 2:  # single bytes hold no pair
            words.append(list(w))
            freqs.append(f)
    counts: dict = defaultdict(int)
    where: dict = defaultdict(set)  # pair -> indices of words that may contain it (may be stale)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            counts[pair] += f
            where[pair].add(wi)
    # Lazy heap: an entry may hold a count that is out of date; it is checked when popped and, if
    # stale, pushed back with the current count. Increases are pushed as they happen, so the heap
    # never under-reports a pair and pops come out in exact (count desc, pair asc) order.
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    vocab = _Vocab()
    merges = []
    while len(vocab.tokens) < vocab_size and heap:
        negc, pair = heapq.heappop(heap)
        c = counts.get(pair, 0)
        if c != -negc:
            if c > 0:
                heapq.heappush(heap, (-c, pair))
            continue
        idx, is_new = vocab.add(pair)
        if is_new:
            merges.append(pair)
        delta: dict = defaultdict(int)
        for wi in where.pop(pair):
            words[wi] = _merge_word(words[wi], pair, idx, freqs[wi], wi, delta, where)
        del counts[pair]
        for p, d in delta.items():
            if d == 0 or p == pair:
                continue
            nc = counts.get(p, 0) + d
            if nc > 0:
                counts[p] = nc
                if d > 0:
                    heapq.heappush(heap, (-nc, p))
            else:
                counts.pop(p, None)
        if on_merge is not None:
            on_merge(int(is_new))
    return merges


def vocab_from_merges(merges: Iterable[tuple[int, int]], byte_tokens: list[bytes] | None = None) -> list[bytes]:
    """Token bytes by id: the 256 byte tokens, then one per merge.

    `byte_tokens[i]` is the byte that token i stands for (identity when None; GPT-2 and cl100k permute
    them). Example: merges=[(104, 105)] -> vocab[256] == b"hi"
    """
    vocab = list(byte_tokens) if byte_tokens is not None else [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return vocab


def _encode_short(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    parts = [piece[i : i + 1] for i in range(len(piece))]
    get = ranks.get
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            r = get(parts[i] + parts[i + 1])
            if r is not None and (best_rank is None or r < best_rank):
                best_rank, best_i = r, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


def _encode_long(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The same merges as `_encode_short` over a linked list with a heap of (rank, start) candidates."""
    n = len(piece)
    start = list(range(n))  # part i covers piece[start[i]:end[i]]; dead parts have start = -1
    end = list(range(1, n + 1))
    nxt = list(range(1, n + 1))  # index of the next live part, n = none
    prv = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        r = ranks.get(piece[i : i + 2])
        if r is not None:
            heap.append((r, i, i + 2))
    heapq.heapify(heap)
    while heap:
        r, i, stop = heapq.heappop(heap)
        j = nxt[i] if start[i] >= 0 else n
        if j >= n or end[j] != stop:  # stale: a neighbour changed since this candidate was pushed
            continue
        end[i] = end[j]  # merge part j into part i
        start[j] = -1
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        p = prv[i]
        if p >= 0:
            rr = ranks.get(piece[start[p] : end[i]])
            if rr is not None:
                heapq.heappush(heap, (rr, p, end[i]))
        k = nxt[i]
        if k < n:
            rr = ranks.get(piece[start[i] : end[k]])
            if rr is not None:
                heapq.heappush(heap, (rr, i, end[k]))
    return [ranks[piece[start[i] : end[i]]] for i in range(n) if start[i] >= 0]


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one pre-split piece by rank, as tiktoken does.

    Example: ranks {b"a": 0, b"b": 1, b"ab": 2}, piece b"abab" -> [2, 2]
    """
    r = ranks.get(piece)
    if r is not None:
        return [r]
    if len(piece) <= _LONG_PIECE:
        return _encode_short(piece, ranks)
    return _encode_long(piece, ranks)


def encode_by_merges(ids: list[int], merges: dict[tuple[int, int], tuple[int, int]]) -> list[int]:
    """HF tokenizers' BPE on one piece's byte ids: of the adjacent pairs in `merges` ((a, b) -> (priority, new id)),
    the one of lowest priority merges first, the leftmost on a tie (a heap, as tokenizers' Word::merge_all).

    Example: merges {(1, 2): (0, 5), (5, 3): (1, 6), (2, 3): (2, 7)}: [1, 2, 3] -> [6]; [2, 3, 1, 2] -> [7, 5]
    """
    n = len(ids)
    tok, nxt, prv, alive = list(ids), list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
    heap = [(merges[p][0], i, p) for i in range(n - 1) if (p := (tok[i], tok[i + 1])) in merges]
    heapq.heapify(heap)
    while heap:
        _, i, pair = heapq.heappop(heap)
        j = nxt[i]
        if not alive[i] or j >= n or (tok[i], tok[j]) != pair:  # stale: a neighbour merged since
            continue
        tok[i], alive[j], nxt[i] = merges[pair][1], False, nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        for a, b in ((prv[i], i), (i, nxt[i])):
            if a >= 0 and b < n and (p := (tok[a], tok[b])) in merges:
                heapq.heappush(heap, (merges[p][0], a, p))
    return [t for t, keep in zip(tok, alive) if keep]


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[int, int]]:
    """The merge that made each multi-byte token, in rank order (for GPT-2 and cl100k ranks).

    A token of rank r is split by running the encoder with only ranks below r: a proper BPE vocabulary
    leaves exactly two parts. Ranks must be 0..N-1 with the 256 single bytes first.
    """
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    merges = []
    for token, rank in by_rank[256:]:
        lower = _RankLimit(ranks, rank)
        parts = _encode_short(token, lower) if len(token) <= _LONG_PIECE else _encode_long(token, lower)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


class _RankLimit(dict):
    """A read-only view of `ranks` that hides every token of rank >= limit."""

    def __init__(self, ranks: dict[bytes, int], limit: int) -> None:
        super().__init__()
        self._ranks, self._limit = ranks, limit

    def get(self, key, default=None):
        r = self._ranks.get(key)
        return r if r is not None and r < self._limit else default

    def __getitem__(self, key):
        r = self.get(key)
        if r is None:
            raise KeyError(key)
        return r
