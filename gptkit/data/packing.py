"""Rows of whole conversations for supervised finetuning (`gptkit prepare --chat` data): nanochat's BOS-aligned
packing, where each row starts at the start of a conversation, conversations follow each other whole while they
fit, a conversation longer than a row is cropped to it, and the rest of a row is padding whose targets are -1.
A random window (RandomBatches) can cut the question off its answer; a packed row never does when it fits.

`PackedRows(data_dir, split, batch_size, block_size, seed, rank, world_size)` yields (x, y) int64 (B, T). Every rank
builds the same rows (the conversations in a seeded order per epoch) and takes every world_size-th one, so ranks
see disjoint rows; after each batch all ranks are at the same conversation, so the state (epoch, position) resumes
exactly. Targets are -1 where the loss mask says the token is not the assistant's, and on padding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gptkit.data.loaders import split_files
from gptkit.data.prepare import load_meta


def conversation_starts(data_dir, split: str, entry: dict | None = None) -> np.ndarray:
    """The token offset where each conversation of a chat split starts (from its .idx file; `entry`: the split's file
    in meta.json, when the caller has read it)."""
    entry = entry or load_meta(data_dir)["splits"][split]["files"][0]
    if not entry.get("index"):
        raise ValueError(f"{data_dir} has no conversation index for {split}; prepare it with `gptkit prepare --chat`")
    return np.fromfile(Path(data_dir) / entry["index"], dtype=np.uint64).astype(np.int64)


class PackedRows:
    """Batches of packed conversation rows; see the module docstring."""

    def __init__(self, data_dir, split: str, batch_size: int, block_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        (path,), (n,), self.dtype = split_files(data_dir, split)
        entry = load_meta(data_dir)["splits"][split]["files"][0]
        self.tokens, self.mask = path, Path(data_dir) / entry["mask"]
        starts = conversation_starts(data_dir, split, entry)
        if not len(starts):
            raise ValueError(f"the {split} split of {data_dir} holds no conversation")
        self.starts, self.ends = starts, np.append(starts[1:], n)
        self.B, self.T, self.seed, self.rank, self.world = batch_size, block_size, seed, rank, world_size
        self.epoch, self.pos = 0, 0  # the next conversation: index `pos` of epoch `epoch`'s order
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.starts))

    def _peek(self) -> tuple[int, int]:
        """The token span of the next conversation (a new epoch's order begins when the last one is done)."""
        if self.pos == len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._shuffled(self.epoch)
        k = self._order[self.pos]
        return int(self.starts[k]), int(self.ends[k])

    def rows_per_epoch(self) -> int:
        """How many rows one pass over the conversations makes (in the first epoch's order; the others differ by
        a row or two at most)."""
        lengths, size = (self.ends - self.starts)[self._shuffled(0)], self.T + 1
        rows, used = 0, size
        for n in lengths.tolist():
            if used + n > size:  # it starts a row (cropped to it when longer)
                rows, used = rows + 1, 0
            used += min(n, size)
        return rows

    def _row(self, tokens, mask) -> tuple[np.ndarray, np.ndarray]:
        """T + 1 tokens of whole conversations (the first cropped if longer), padded; and their loss mask."""
        ids, keep, size, used = [], [], self.T + 1, 0
        while used < size:
            a, b = self._peek()
            if ids and b - a > size - used:  # it does not fit: it starts the next row
                break
            self.pos += 1
            b = min(b, a + size - used)
            ids.append(tokens[a:b])
            keep.append(mask[a:b])
            used += b - a
        row, m = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=bool)
        got = np.concatenate(ids).astype(np.int64)
        row[: len(got)], m[: len(got)] = got, np.concatenate(keep).astype(bool)
        return row, m

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.memmap(self.tokens, dtype=self.dtype, mode="r")
        mask = np.memmap(self.mask, dtype=np.uint8, mode="r")
        rows = [self._row(tokens, mask) for _ in range(self.B * self.world)][self.rank :: self.world]
        x = np.stack([r[:-1] for r, _ in rows])
        y = np.stack([np.where(m[1:], r[1:], -1) for r, m in rows])
        return x, y

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._shuffled(self.epoch)

    @staticmethod
    def resume_state(states: list[dict], rank: int) -> dict:
        """Every rank stands at the same conversation after a batch, so any layout resumes from rank 0's state."""
        return states[0]
