"""The work a tokenizer spreads over processes: counting the pre-tokenized chunks of a training corpus
(`count_chunks`), and encoding batches of texts (`encode_in_workers`), both through gptkit.pool's bounded pool.

Not here: the BPE merges themselves (gptkit.tokenizer.bpe) or the tokenizer (gptkit.tokenizer.byte_level), which calls
these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import regex

from gptkit.pool import imap_bounded


def _split_out_specials(text: str, specials: list[str]) -> list[str]:
    if not specials:
        return [text]
    pat = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))
    return pat.split(text)


def _count_block(args: tuple[list[str], str | None, list[str]]) -> Counter:
    texts, pattern, specials = args
    split = regex.compile(pattern).findall if pattern is not None else (lambda t: [t])
    counts: Counter = Counter()
    for text in texts:
        for piece in _split_out_specials(text, specials):
            if piece:
                counts.update(split(piece))
    return counts


def _batches(texts: Iterable[str], pattern, specials, target_chars: int = 1 << 20) -> Iterator[tuple]:
    batch, size = [], 0
    for t in texts:
        if not isinstance(t, str):
            raise ValueError(f"training texts must be str, got {type(t).__name__}; decode bytes to text first")
        batch.append(t)
        size += len(t)
        if size >= target_chars:
            yield batch, pattern, specials
            batch, size = [], 0
    if batch:
        yield batch, pattern, specials


def count_chunks(texts: Iterable[str], pattern: str | None, specials: list[str] = (), num_workers: int = 1) -> Counter:
    """Count each unique pre-tokenized chunk over documents, streaming; each document is split alone."""
    total: Counter = Counter()
    for counts in imap_bounded(_count_block, _batches(texts, pattern, list(specials)), num_workers):
        total.update(counts)
    return total


_worker_tokenizer = None  # each worker process's copy of the tokenizer, sent once when the process starts


def _set_worker_tokenizer(tok) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tok


def _worker_encode(task: tuple[list[str], dict]) -> list[list[int]]:
    texts, kwargs = task
    return [_worker_tokenizer.encode(t, **kwargs) for t in texts]


def encode_in_workers(tok, texts: list[str], num_workers: int, **encode_kwargs) -> list[list[int]]:
    """tok.encode over texts in num_workers processes, each holding one copy of tok; results in order."""
    size = max(1, len(texts) // (4 * num_workers))
    tasks = [(texts[i : i + size], encode_kwargs) for i in range(0, len(texts), size)]
    out: list[list[int]] = []
    for ids in imap_bounded(_worker_encode, tasks, num_workers, initializer=_set_worker_tokenizer, initargs=(tok,)):
        out += ids
    return out
