"""What a training run needs that does not depend on the backend: the loop (RunLoop), the learning-rate schedule,
accumulation, the result and divergence types, Ctrl-C handling, run dir checks, metrics.jsonl truncation on resume,
--init_from and --resume configs. No torch, no mlx (numpy, tqdm): gptkit.train and gptkit.mlx.train share it.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
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
    src = ckpt.read_model_source(spec, which="last")
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


def run_model_config(cfg: RunConfig, data_dir, meta: dict, resume: bool):
    """(the run's config with its model resolved, the --init_from source or None): the model shape comes from
    init_from when starting fresh from one, else from the config with the data's vocab_size."""
    if cfg.train.init_from and not resume:
        init = init_source(cfg.train.init_from, cfg.model, data_dir, meta)
        return replace(cfg, model=init.config), init
    return replace(cfg, model=replace(cfg.model, vocab_size=meta["tokenizer"]["vocab_size"])), None


def train_batches(data_dir, cfg: RunConfig, rank: int = 0, world_size: int = 1):
    """The training batches of a rank: nanoGPT's random windows (seed + rank) or build-nanogpt's shard strides."""
    from gptkit.loaders import RandomBatches, ShardedLoader

    t, T = cfg.train, cfg.model.block_size
    if t.loader == "sequential":
        return ShardedLoader(data_dir, "train", t.batch_size, T, rank=rank, world_size=world_size)
    return RandomBatches(data_dir, "train", t.batch_size, T, seed=t.seed + rank)


def check_fresh(run_dir: Path, overwrite: bool) -> None:
    """A new run never silently replaces another run's checkpoints and metrics."""
    if not overwrite and any((run_dir / n).exists() for n in (ckpt.LAST, ckpt.BEST, METRICS)):
        raise ValueError(f"{run_dir} already holds a run; continue it with `gptkit train --resume "
                         f"{run_dir}`, pick another --out_dir, or replace it with --overwrite")


def check_run_tokenizer(run_dir: Path, data_dir, meta: dict) -> None:
    saved = ckpt.read_run_tokenizer_info(run_dir)
    if saved.get("fingerprint") != meta["tokenizer"]["fingerprint"]:
        raise ValueError(f"{data_dir} was prepared with another tokenizer than the run {run_dir} "
                         f"({meta['tokenizer']['spec']!r} vs {saved.get('spec')!r}); resume with the run's data")


def start_run_dir(run_dir: Path, cfg: RunConfig, data_dir, meta: dict, overwrite: bool) -> None:
    """Create the run dir (clearing an old run's files when overwrite), copy the tokenizer, write config.json."""
    if overwrite:
        for name in (METRICS, ckpt.LAST, ckpt.BEST, "loss.png"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok_info = ckpt.save_run_tokenizer(run_dir, data_dir, meta)
    ckpt.write_run_config(run_dir, cfg, tok_info)


class RunLoop:
    """The training loop both backends run: evaluate every eval_interval steps (and at the end), checkpoint,
    stop on max_iters, max_seconds or Ctrl-C, show a progress bar, write metrics.jsonl and loss.png.

    A backend's trainer sets cfg, run_dir, data_dir, step, best_val, elapsed0, tokens_per_step, is_main, and
    provides train_step() -> loss, _eval_loss(x, y) -> float, save(name), sample_text() -> str,
    _set_mode(train), _agree(code) -> code (the ranks' agreement; identity on one process) and
    _mfu_figures() -> (peak, flops/step).
    """

    BACKEND = ""  # "torch" or "mlx": recorded in checkpoints; --resume continues with the backend that wrote one

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def _resume_or_start(self, resume: bool, overwrite: bool, meta: dict) -> None:
        """Counters at zero, then the last checkpoint (resume) or a check that the run dir holds no other run."""
        self.step, self.best_val, self.elapsed0 = 0, math.inf, 0.0
        if resume:
            check_run_tokenizer(self.run_dir, self.data_dir, meta)
            self._resume()
        else:
            check_fresh(self.run_dir, overwrite)

    def evaluate(self) -> dict[str, float]:
        """Mean loss over eval_iters fixed batches (seed EVAL_SEED: the same at every evaluation, in both backends)
        of each split, in eval mode."""
        from gptkit.loaders import RandomBatches

        self._set_mode(train=False)
        out = {}
        for split in ("train", "val"):
            batches = RandomBatches(self.data_dir, split, self.cfg.train.batch_size, self.cfg.model.block_size,
                                    seed=EVAL_SEED)
            out[split] = sum(self._eval_loss(*next(batches)) for _ in range(self.cfg.train.eval_iters))
            out[split] /= self.cfg.train.eval_iters
        self._set_mode(train=True)
        return out

    def _diverged(self, value: float) -> TrainingDiverged:
        """The error a non-finite training loss stops the run with (raised before the weights are updated)."""
        return TrainingDiverged(
            f"the training loss became {value} at step {self.step + 1}; stopped without updating the weights. "
            f"The last good checkpoint ({self.run_dir / ckpt.LAST}) is kept; lower lr or raise warmup_iters")

    def _checkpoint_meta(self, **backend_state) -> dict:
        """The checkpoint header both backends write, plus the backend's own optimizer/RNG/loader state."""
        return {"step": self.step, "best_val": None if math.isinf(self.best_val) else self.best_val,
                "elapsed_s": self.elapsed(), "model": self.cfg.model.__dict__, "train": self.cfg.train.__dict__,
                "backend": self.BACKEND, **backend_state}

    def _read_last_checkpoint(self) -> tuple[Path, dict, dict]:
        """(path, tensors, meta) of the run's last checkpoint, refusing another backend's or another model's."""
        path = ckpt.checkpoint_path(self.run_dir, "last")
        tensors, meta = ckpt.read_checkpoint(path)
        written = meta.get("backend", "torch")
        if written != self.BACKEND:
            raise ValueError(f"{path} was written by the {written} backend; resume it with --backend {written} "
                             "(weights move between backends; optimizer state does not)")
        if meta["model"] != self.cfg.model.__dict__:
            diff = {k: (v, self.cfg.model.__dict__.get(k)) for k, v in meta["model"].items()
                    if self.cfg.model.__dict__.get(k) != v}
            raise ValueError(f"{path} was saved from another model config (checkpoint vs now: {diff}); "
                             "resume with the run's own config, or start a new --out_dir")
        return path, tensors, meta

    def _restore_counters(self, meta: dict) -> None:
        self.step, self.elapsed0 = meta["step"], meta["elapsed_s"]
        self.best_val = math.inf if meta["best_val"] is None else meta["best_val"]
        truncate_metrics(self.run_dir / METRICS, self.step)

    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        t = self.cfg.train
        main = self.is_main
        result = TrainResult(self.run_dir, self.step, best_val=self.best_val)
        peak, flops_per_step = self._mfu_figures()
        bar = tqdm(total=t.max_iters, initial=self.step, disable=not (main and t.progress), desc="train",
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        self.t0 = time.perf_counter()
        resumed_at = self.step
        self._set_mode(train=True)
        try:
            with Interrupt() as interrupt:
                while True:
                    at_end = self.step >= t.max_iters
                    if (self.step % t.eval_interval == 0 or at_end) and not self.step == resumed_at > 0:
                        result.evals.append(self._eval_and_save(bar))
                    if at_end:
                        break
                    reason = self._stop_reason(interrupt)
                    if reason:
                        result.stopped = reason
                        if reason == "time":
                            result.evals.append(self._eval_and_save(bar))
                        else:
                            self.save(ckpt.LAST)
                        break
                    t_step = time.perf_counter()
                    loss = self.train_step()
                    result.losses.append(loss)
                    dt = time.perf_counter() - t_step
                    if self.step % t.log_interval == 0 or self.step == t.max_iters:
                        post = {"loss": f"{loss:.4f}", "tok/s": f"{self.tokens_per_step / dt:,.0f}"}
                        if peak:
                            post["mfu"] = f"{100 * flops_per_step / dt / peak:.1f}%"
                        bar.set_postfix(post, refresh=False)
                    bar.update(1)
        finally:
            bar.close()
            if main and (self.run_dir / METRICS).is_file():
                from gptkit.plot import plot_metrics

                plot_metrics(self.run_dir / METRICS, self.run_dir / "loss.png")
        result.step, result.best_val = self.step, self.best_val
        return result

    def _stop_reason(self, interrupt: Interrupt) -> str:
        """"interrupted" (Ctrl-C on any rank), "time" (max_seconds reached) or "" (go on)."""
        code = 2.0 if interrupt.requested else 0.0
        session = time.perf_counter() - self.t0  # this invocation's time, so a resumed run gets its own budget
        if not code and self.cfg.train.max_seconds and session >= self.cfg.train.max_seconds:
            code = 1.0
        code = self._agree(code)
        return {0.0: "", 1.0: "time", 2.0: "interrupted"}[code]

    def _eval_and_save(self, bar) -> dict:
        t = self.cfg.train
        losses = self.evaluate()
        record = {"step": self.step, "tokens": self.step * self.tokens_per_step, "elapsed_s": round(self.elapsed(), 3),
                  "train_loss": losses["train"], "val_loss": losses["val"], "lr": lr_at(max(self.step - 1, 0), t)}
        improved = losses["val"] < self.best_val
        self.best_val = min(self.best_val, losses["val"])
        if self.step > 0:
            self.save(ckpt.LAST)
            if improved:
                self.save(ckpt.BEST)
        if self.is_main:
            with open(self.run_dir / METRICS, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if t.progress:
                bar.write(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                          f" ({record['elapsed_s']:.1f} s)", file=sys.stderr)
                if t.sample_tokens and self.step > 0:
                    bar.write("-" * 40 + "\n" + self.sample_text() + "\n" + "-" * 40, file=sys.stderr)
        return record
