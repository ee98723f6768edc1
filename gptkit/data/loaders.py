"""Batches of (x, y) token windows, y = x shifted by one, as int64 numpy arrays of shape (B, T).

- `random_batches`: nanoGPT's get_batch: random offsets into a split, read through a fresh memmap each
  batch (a long-lived memmap grows RSS as pages are touched).
- `SlidingWindowDataset`: Raschka's GPTDatasetV1 (max_length, stride); map-style, so torch's DataLoader
  takes it as it is (numpy pairs become tensors), and a plain iterator of pairs without torch.
- `ShardedLoader`: build-nanogpt's DataLoaderLite: each DDP rank reads a disjoint stride of every shard
  in turn; `state_dict()` / `load_state_dict()` resume at the identical next batch.
- `AdditionTask`: the lecture's exercise, "a+b=c" with c's digits reversed, prompt targets masked -1.

Conversations (`gptkit prepare --chat`) have a loss mask beside each token file: the random and sequential
loaders set a target to -1 (skipped by both backends' losses) where the mask says it is not the assistant's.

All iterators carry their state explicitly (a seed or a position), never a global RNG. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gptkit.data.prepare import load_meta


def split_files(data_dir: str | os.PathLike, split: str) -> tuple[list[Path], list[int], np.dtype]:
    """The token files of a split (from meta.json), their token counts, and their dtype."""
    meta = load_meta(data_dir)
    if split not in meta["splits"]:
        raise ValueError(f"split must be one of {sorted(meta['splits'])}, got {split!r}")
    files = meta["splits"][split]["files"]
    paths = [Path(data_dir) / f["name"] for f in files]
    dtype = np.dtype(meta["dtype"])
    for p, f in zip(paths, files):
        if not p.is_file() or p.stat().st_size != f["tokens"] * dtype.itemsize:
            raise ValueError(f"{p} is missing or not the size meta.json records; prepare the data again")
    return paths, [f["tokens"] for f in files], dtype


def split_masks(data_dir: str | os.PathLike, split: str) -> list[Path | None]:
    """The loss-mask file beside each token file of a split (chat data), or None for each (text data)."""
    return [Path(data_dir) / f["mask"] if f.get("mask") else None
            for f in load_meta(data_dir)["splits"][split]["files"]]


def masked_targets(y: np.ndarray, mask_path: Path | None, starts) -> np.ndarray:
    """Targets y (B, T) read from offsets starts + 1, with -1 where the mask file says 0 (not the assistant's)."""
    if mask_path is None:
        return y
    mask = np.memmap(mask_path, dtype=np.uint8, mode="r")
    keep = np.stack([mask[i + 1 : i + 1 + y.shape[1]] for i in starts]).astype(bool)
    return np.where(keep, y, -1)


def _too_small(split: str, n: int, need: int, what: str) -> ValueError:
    return ValueError(
        f"the {split} split has {n:,} tokens, fewer than the {need:,} that {what} needs; "
        "lower block_size / batch_size, or prepare more data (or a larger --val-fraction)"
    )


class RandomBatches:
    """nanoGPT's get_batch as an iterator; its state is the numpy Generator's, so resume is exact."""

    def __init__(self, data_dir, split: str, batch_size: int, block_size: int, seed: int = 0) -> None:
        self.paths, self.sizes, self.dtype = split_files(data_dir, split)
        self.masks = split_masks(data_dir, split)
        self.B, self.T = batch_size, block_size
        usable = [max(n - block_size, 0) for n in self.sizes]  # valid start offsets per file
        if sum(usable) == 0:
            raise _too_small(split, max(self.sizes, default=0), block_size + 1, f"block_size={block_size}")
        self._weights = np.asarray(usable, dtype=np.float64) / sum(usable)
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        k = 0 if len(self.paths) == 1 else int(self.rng.choice(len(self.paths), p=self._weights))
        data = np.memmap(self.paths[k], dtype=self.dtype, mode="r")
        ix = self.rng.integers(0, self.sizes[k] - self.T, size=self.B)
        windows = data[ix[:, None] + np.arange(self.T + 1)].astype(np.int64)  # (B, T + 1) in one gather
        x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
        return x, masked_targets(y, self.masks[k], ix)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    @staticmethod
    def resume_state(states: list[dict], rank: int) -> dict | None:
        """The state rank `rank` resumes from, given every rank's saved one: its own; None (a fresh stream from its
        seed) for a rank the saving run did not have. Random windows have no position to carry over."""
        return states[rank] if rank < len(states) else None


def random_batches(data_dir, split: str, batch_size: int, block_size: int, seed: int = 0) -> RandomBatches:
    return RandomBatches(data_dir, split, batch_size, block_size, seed)


class SlidingWindowDataset:
    """Windows `tokens[i : i + max_length]` -> next tokens, for i = 0, stride, 2*stride, ...

    Example: tokens 0..9, max_length=4, stride=3 -> 2 windows: x [0 1 2 3] y [1 2 3 4], x [3 4 5 6] y [4 5 6 7]
    (a window needs max_length + 1 tokens: the count is (len(tokens) - 1 - max_length) // stride + 1).
    """

    def __init__(self, tokens, max_length: int, stride: int) -> None:
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length and stride must be >= 1, got {max_length} and {stride}")
        self.tokens = np.asarray(tokens)
        if len(self.tokens) <= max_length:
            raise ValueError(f"{len(self.tokens)} tokens are too few for max_length={max_length} (need at least "
                             f"{max_length + 1})")
        self.max_length, self.stride = max_length, stride

    def __len__(self) -> int:
        return (len(self.tokens) - 1 - self.max_length) // self.stride + 1

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        i = k * self.stride
        w = self.tokens[i : i + self.max_length + 1].astype(np.int64)
        return w[:-1], w[1:]

    def __iter__(self):
        return (self[k] for k in range(len(self)))


class ShardedLoader:
    """build-nanogpt's DataLoaderLite over a split's shards, for `world_size` ranks.

    Rank r reads B*T+1 tokens at r*B*T, then steps by B*T*world_size; when the next step of all ranks
    would run past the shard, every rank moves to the next shard (wrapping around) at r*B*T. Unlike
    DataLoaderLite, the end-of-shard test uses rank 0's position, so all ranks switch at the same step
    (there, higher ranks switch a step early and the ranks drift apart). Shards too small for one
    step (a short last shard) are skipped.
    """

    def __init__(self, data_dir, split: str, batch_size: int, block_size: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        paths, sizes, self.dtype = split_files(data_dir, split)
        self.B, self.T, self.rank, self.world = batch_size, block_size, rank, world_size
        need = batch_size * block_size * world_size + 1
        keep = [(p, n, m) for p, n, m in zip(paths, sizes, split_masks(data_dir, split)) if n >= need]
        if not keep:
            what = f"one step of batch {batch_size} x block {block_size} x {world_size} ranks"
            raise _too_small(split, max(sizes, default=0), need, what)
        self.paths, self.sizes, self.masks = [p for p, _, _ in keep], [n for _, n, _ in keep], [m for *_, m in keep]
        self.shard, self.pos = 0, self.B * self.T * rank
        self._all = list(zip(paths, sizes))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        B, T = self.B, self.T
        data = np.memmap(self.paths[self.shard], dtype=self.dtype, mode="r")
        buf = data[self.pos : self.pos + B * T + 1].astype(np.int64)
        x, y = buf[:-1].reshape(B, T), buf[1:].reshape(B, T)
        y = masked_targets(y, self.masks[self.shard], range(self.pos, self.pos + B * T, T))
        self.pos += B * T * self.world
        base = self.pos - B * T * self.rank  # rank 0's position: every rank takes the same decision
        if base + B * T * self.world + 1 > self.sizes[self.shard]:
            self.shard = (self.shard + 1) % len(self.paths)
            self.pos = B * T * self.rank
        return x, y

    def state_dict(self) -> dict:
        return {"shard": self.shard, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.shard, self.pos = int(state["shard"]), int(state["pos"])

    def resume_state(self, states: list[dict], rank: int) -> dict:
        """The state this loader (rank `rank` of self.world) resumes from, given those of every rank of the run that
        saved them (any number of ranks, same batch size): the same shard file and next window (rank 0's position is
        the step's first window), this rank's offset from it. A ValueError when that shard is too small for one step
        of this layout (shards smaller than a step are skipped)."""
        if len(states) == self.world:
            return states[rank]
        kept = [p for p, n in self._all if n >= self.B * self.T * len(states) + 1]  # the saving layout's shards
        path, base = kept[int(states[0]["shard"])], int(states[0]["pos"])
        if path not in self.paths:
            raise ValueError(f"the saved data position is in {path.name}, which is too small for one step of "
                             f"{self.world} process(es); resume with {len(states)}")
        shard = self.paths.index(path)
        if base + self.B * self.T * self.world + 1 > self.sizes[shard]:  # this layout's step no longer fits
            shard, base = (shard + 1) % len(self.paths), 0
        return {"shard": shard, "pos": base + self.B * self.T * rank}


class AdditionTask:
    """Batches of "a+b=c" with c's digits reversed (the lecture's exercise), from a seed.

    Vocabulary: digits 0-9 are ids 0-9, '+' is 10, '=' is 11. Operands have ndigit digits, zero-padded,
    and c has ndigit + 1: with ndigit=2, 47+85=132 is the sequence "47+85=231". Targets that would predict
    the prompt (a, '+', b, '=') are -1, so only c's digits are learned. Example (ndigit=1): 3+4=7 ->
    x = [3, 10, 4, 11, 7], y = [-1, -1, -1, 7, 0]
    """

    VOCAB = "0123456789+="

    def __init__(self, ndigit: int = 2, seed: int = 0) -> None:
        if ndigit < 1:
            raise ValueError(f"ndigit must be >= 1, got {ndigit}")
        self.ndigit = ndigit
        self.rng = np.random.default_rng(seed)

    @property
    def block_size(self) -> int:
        return 3 * self.ndigit + 2

    def encode(self, a: int, b: int) -> list[int]:
        n = self.ndigit
        s = f"{a:0{n}d}+{b:0{n}d}=" + f"{a + b:0{n + 1}d}"[::-1]
        return [self.VOCAB.index(c) for c in s]

    def example(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        seq = np.asarray(self.encode(a, b), dtype=np.int64)
        x, y = seq[:-1], seq[1:].copy()
        y[: 2 * self.ndigit + 1] = -1
        return x, y

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        ab = self.rng.integers(0, 10**self.ndigit, size=(batch_size, 2))
        pairs = [self.example(int(a), int(b)) for a, b in ab]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def decode_answer(self, digits: list[int]) -> int:
        """The sum from c's reversed digits. Example: [2, 3, 1] -> 132"""
        return int("".join(self.VOCAB[d] for d in digits)[::-1])
