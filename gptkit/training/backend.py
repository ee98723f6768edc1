"""The contract between a training run (gptkit.training.run.Run) and a backend: the whole of it, in one class.

A backend owns the model and optimizer of one framework (PyTorch: gptkit.torch.backend.TorchBackend; MLX:
gptkit.mlx.backend.MLXBackend) and knows nothing of run dirs, schedules, evaluation cadence, metrics or stop
reasons: the Run decides those and calls the methods below, in the order its __init__ states. A third
backend (JAX, say) subclasses Backend and implements the abstract methods; the defaults below are those of
one process, so only a distributed backend overrides `setup`'s ranks, `gather`, `agree` and `barrier`.

Arrays cross the boundary as numpy (batches in, weights and state out), so the Run and the checkpoint
format stay framework-free. No torch, no mlx.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from gptkit.config import GPTConfig, TrainConfig

Batch = tuple[np.ndarray, np.ndarray]  # (inputs, targets), each (B, T) integer ids


# Muon's Newton-Schulz iteration, the same in every backend: Keller Jordan's quintic (the steepest slope at zero that
# still converges) and its number of steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


# Tokens per evaluation forward: consecutive evaluation batches are joined up to this many (fewer, larger forwards
# cost a CPU less per token at the default preset's 1,024-token batches; docs/training.md has the figure).
EVAL_TOKENS = 8192


def joined(batches: Sequence[Batch], max_tokens: int = EVAL_TOKENS) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Consecutive batches joined along the batch axis into (inputs, targets, how many batches joined), each of at
    most max_tokens tokens (a larger batch stays alone). The mean loss of a join is the mean of its batches' mean
    losses only when every target counts and the shapes match, so batches with ignored targets (-1: chat data) or
    another shape are never joined. Weighting each join's loss by its count gives evaluation's mean of batch means.
    max_tokens 0: every batch alone.

    Example: 20 batches of (16, 64), max_tokens 8192 -> 3 joins of (128, 64), (128, 64), (64, 64): counts 8, 8, 4
    """
    out: list[tuple[list, list]] = []
    for x, y in batches:
        last = out[-1] if out else None
        if (last is not None and x.shape == last[0][0].shape and y.min() >= 0 and last[1][0].min() >= 0
                and (len(last[0]) + 1) * x.size <= max_tokens):
            last[0].append(x)
            last[1].append(y)
        else:
            out.append(([x], [y]))
    return [(xs[0], ys[0], 1) if len(xs) == 1 else (np.concatenate(xs), np.concatenate(ys), len(xs)) for xs, ys in out]


def takes_muon(name: str, ndim: int) -> bool:
    """Which parameters optimizer="muon" gives to Muon, in every backend: the matrices inside the blocks
    (attention and MLP weights); AdamW keeps embeddings, the head, norms and biases.

    Example: "h.0.attn.c_attn.weight", 2 -> True; "wte.weight", 2 -> False; "h.0.ln_1.weight", 1 -> False
    """
    return name.startswith("h.") and ndim == 2


class Backend(ABC):
    """One framework's model + optimizer + training step, driven by a Run."""

    name = ""  # recorded in checkpoints: --resume continues with the backend that wrote one
    rank, world_size = 0, 1  # this process among the run's processes (setup sets them)
    parallel = "one"  # how the processes split the work: "one", "ddp" or "fsdp" (recorded in checkpoints)
    sharded = False  # each rank holds part of the model: every rank runs every forward (sampling too)

    def setup(self, train: TrainConfig) -> None:
        """Pick the device, threads and process group; the first call a Run makes."""

    def seed(self, seed: int) -> None:
        """Seed the framework's global RNG (model init, dropout)."""

    @abstractmethod
    def build(self, model: GPTConfig, train: TrainConfig, init: dict[str, np.ndarray] | None, source: str) -> None:
        """Create the model (from the RNG just seeded, or with the weights `init` read from `source`) and its
        optimizer, wrapped for training however the framework wants (compiled, distributed)."""

    @abstractmethod
    def train_step(self, step: int, batches: Sequence[Batch], lr: float, weights: Sequence[float] | None = None) -> Any:
        """One optimizer step at learning rate lr over micro-batches (gradients accumulated; `step` counts the steps
        done before this one): the mean over micro-batches of each one's loss times its weight (default 1: see
        Run.token_weights). Returns that loss where it was computed (a device scalar, not a float): reading it back
        waits for the device, so the Run does that only when it logs (see `to_floats`)."""

    def to_floats(self, losses: list) -> list[float]:
        """Losses returned by train_step as floats, in one transfer (averaged over ranks when distributed)."""
        return [float(x) for x in losses]

    @abstractmethod
    def eval_loss(self, batches: Sequence[Batch]) -> float:
        """Mean loss over batches in evaluation mode (no dropout, no gradients), then back to training mode."""

    @abstractmethod
    def sample(self, prompt: list[int], max_new_tokens: int, *, seed: int, temperature: float, top_k: int | None,
               stop_token: int | None) -> list[int]:
        """New token ids after prompt, from an RNG seeded with `seed` (never the training RNG)."""

    @abstractmethod
    def weights(self) -> dict[str, np.ndarray]:
        """The unwrapped model's weights, fp32, by gptkit parameter name (a tied lm_head left out). Every rank
        calls it (a sharded model gathers); what rank 0 returns is saved, the others may return {}."""

    @abstractmethod
    def load_weights(self, tensors: dict[str, np.ndarray], source: str) -> None:
        """Copy weights in, refusing names or shapes that differ from the model's (naming `source`)."""

    @abstractmethod
    def average(self, decay: float) -> None:
        """train.ema_decay: move the averaged weights toward the model's, avg <- decay avg + (1 - decay) w, after a
        step (build makes them, a copy of the model's)."""

    @abstractmethod
    def swap_average(self) -> None:
        """Exchange the model's weights and the averaged ones (twice: as before). The Run evaluates, samples and
        saves the averaged weights in the model between two calls."""

    @abstractmethod
    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able fields) that restore the optimizer exactly; called on every rank, as weights()."""

    @abstractmethod
    def load_optimizer_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what optimizer_state returned (`meta` is the whole checkpoint header)."""

    def rng_state(self) -> dict[str, np.ndarray]:
        """This rank's RNG state, saved per rank so a resumed run draws the same dropout masks."""
        return {}

    def load_rng_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore what rng_state returned."""

    def gather(self, obj: Any) -> list | None:
        """Every rank's obj, in rank order, on rank 0; None on the other ranks."""
        return [obj]

    def agree(self, code: int) -> int:
        """The largest code over the ranks: every rank stops at the same step, or the next collective hangs."""
        return code

    def total(self, count: int) -> int:
        """count summed over the ranks."""
        return count

    def barrier(self) -> None:
        """Wait until every rank gets here."""

    def peak_flops(self, configured: float) -> float | None:
        """The device's peak FLOP/s for MFU (configured if > 0), or None when unknown."""
        return None

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token of the model (0: no MFU shown)."""
        return 0.0

    def close(self) -> None:
        """Release what setup took (a process group)."""
