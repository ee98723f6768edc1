"""What a training run needs that does not depend on the backend: the learning-rate schedule, accumulation,
the result and divergence types, Ctrl-C handling, metrics.jsonl truncation on resume, --init_from and
--resume configs. No torch, no mlx: gptkit.train (PyTorch) and gptkit.mlx.train share it.
"""

from __future__ import annotations

import json
import math
import signal
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from gptkit import checkpoint as ckpt
from gptkit.config import RunConfig, TrainConfig

METRICS = "metrics.jsonl"
EVAL_SEED = 10_000  # eval batches come from their own fixed seed: the same batches at every evaluation
# Fields a resumed run may change; anything else must match the checkpoint's run.
RESUMABLE = {"max_iters", "max_seconds", "eval_interval", "log_interval", "sample_tokens", "sample_prompt",
             "progress", "device", "compile", "threads", "peak_flops", "out_dir"}


class TrainingDiverged(ValueError):
    """The loss became NaN or inf; the last good checkpoint is left as it was."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    losses: list[float] = field(default_factory=list)  # training loss of each step run in this call
    evals: list[dict] = field(default_factory=list)  # the metrics.jsonl records written in this call
    best_val: float = math.inf
    stopped: str = "done"  # done | interrupted | time




def lr_at(step: int, t: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, cosine to min_lr, then min_lr.

    Example (lr=1e-3, min_lr=1e-4, warmup_iters=100, decay to 2000): step 0 -> 1e-5, step 99 -> 1e-3,
    step 2000 -> 1e-4.
    """
    decay_iters = t.lr_decay_iters or t.max_iters
    if step < t.warmup_iters:
        return t.lr * (step + 1) / t.warmup_iters
    if step >= decay_iters:
        return t.min_lr
    progress = (step - t.warmup_iters) / max(1, decay_iters - t.warmup_iters)
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (t.lr - t.min_lr)


def accumulation_steps(t: TrainConfig, block_size: int, world_size: int) -> int:
    """Micro-steps per optimizer step so that all ranks together see total_batch_tokens per step."""
    per_micro = t.batch_size * block_size * world_size
    if t.total_batch_tokens == 0:
        return 1
    if t.total_batch_tokens % per_micro:
        raise ValueError(
            f"total_batch_tokens={t.total_batch_tokens:,} is not a multiple of batch_size x block_size x ranks "
            f"= {t.batch_size} x {block_size} x {world_size} = {per_micro:,}; pick a multiple, e.g. "
            f"{max(1, round(t.total_batch_tokens / per_micro)) * per_micro:,}"
        )
    return t.total_batch_tokens // per_micro


class Interrupt:
    """First Ctrl-C: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def init_source(spec: str, model_cfg, data_dir, meta: dict):
    """The weights of --init_from, with the run's model config: the source's shape, this config's dropout, and
    block_size cropped to this config's when smaller (nanoGPT's crop_block_size). Refuses data prepared with
    another tokenizer than the source's."""
    from gptkit.checkpoint import read_model_source

    src = read_model_source(spec, which="last")
    want = src.tokenizer["fingerprint"] or src.load_tokenizer().fingerprint()
    have = meta["tokenizer"]
    if have["fingerprint"] != want or have["vocab_size"] != src.config.vocab_size:
        raise ValueError(
            f"--init_from {spec} was trained with tokenizer {src.tokenizer['spec']!r} (vocab "
            f"{src.config.vocab_size:,}), but {data_dir} was prepared with {have['spec']!r} (vocab "
            f"{have['vocab_size']:,}); prepare the data with the same tokenizer (`gptkit prepare SOURCE -t "
            f"{src.tokenizer['spec']} -o DIR`), or train from scratch without --init_from")
    block = model_cfg.block_size
    if block > src.config.block_size:
        raise ValueError(f"block_size={block} exceeds the {src.config.block_size} positions of --init_from {spec}; "
                         f"pass --block_size={src.config.block_size} or less")
    if block < src.config.block_size:
        src.tensors["wpe.weight"] = src.tensors["wpe.weight"][:block]
    src.config = replace(src.config, dropout=model_cfg.dropout, block_size=block)
    return src


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records past `step`: a resumed run writes them again."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    ckpt.atomic_write_text(path, "".join(line + "\n" for line in keep))


def resume_config(run_dir: str | Path, overrides: list[str]) -> RunConfig:
    """The config of a run dir with `--key=value` overrides, refusing changes that break exact resume."""
    from gptkit.config import parse_overrides

    saved = ckpt.read_run_config(run_dir)
    model_over, train_over = parse_overrides(overrides)
    bad = sorted(set(model_over) | (set(train_over) - RESUMABLE))
    if bad:
        raise ValueError(f"--resume keeps the run's config; these cannot change: {', '.join(bad)} "
                         f"(may change: {', '.join(sorted(RESUMABLE))}). Start a new --out_dir instead")
    return replace(saved, train=replace(saved.train, out_dir=str(run_dir), **train_over))
