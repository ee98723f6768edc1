"""A training run, whatever the backend: `Run(cfg, backend).run()`.

The Run owns a run's life: its data, run dir, fresh/resume/--init_from decisions, the LR schedule, evaluation
every eval_interval steps (and at the end), checkpoints, metrics.jsonl and loss.png, the progress bar, and why
it stopped (StopReason); with ema_decay, the weight average's decay each step, and that evaluation, samples and
checkpoints see the average (the backend keeps it and swaps it in). The backend (gptkit.training.backend.Backend)
owns the model and optimizer and does what the Run asks. Set-up happens in one place, in one order: Run.__init__,
top to bottom.

Losses stay on the device until the log interval (or an evaluation, a checkpoint or the end) reads them back in
one transfer, so a GPU never waits for the host between steps; a NaN or inf loss found then stops the run naming
the step it first appeared at, before anything is saved, so the last good checkpoint is kept.

No torch, no mlx (numpy, tqdm): both backends share this loop.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from gptkit.config import DEFAULT_PRESET, RunConfig, TrainConfig, STAGE_FIELDS, load_stages, parse_overrides
from gptkit.data.prepare import NAMED_DATA, data_tokenizer, load_meta
from gptkit.training import checkpoint as ckpt
from gptkit.training import setup
from gptkit.training.backend import Backend
from gptkit.training.run_dir import (BEST, LAST, METRICS, PLOT, append_metrics, check_fresh, check_resumable,
                                     check_run_data, checkpoint_path, lock_run_dir, start_run_dir, truncate_metrics,
                                     unlock_new_run_dir)

EVAL_SEED = 10_000  # eval batches come from their own fixed seed: the same batches at every evaluation
SAMPLE_TEMPERATURE, SAMPLE_TOP_K = 0.8, 200  # the samples printed at each evaluation


class StopReason(enum.StrEnum):
    """Why run() returned: max_iters reached, Ctrl-C (on any rank), or max_seconds reached."""

    DONE = "done"
    INTERRUPTED = "interrupted"
    TIME = "time"


class TrainingDiverged(ValueError):
    """The loss became NaN or inf; the last good checkpoint is left as it was."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    losses: list[float] = field(default_factory=list)  # training loss of each step run in this call
    evals: list[dict] = field(default_factory=list)  # the metrics.jsonl records written in this call
    best_val: float = math.inf
    stopped: StopReason = StopReason.DONE
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM), if one did


class Interrupt:
    """First Ctrl-C or SIGTERM (what SLURM, Kubernetes and `timeout` send before killing): finish the step,
    checkpoint, stop. A second Ctrl-C: stop at once. `signum` is the signal that asked."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


class Run:
    """One training run of `cfg` on `backend`: set up (fresh, resumed, or from --init_from weights), then run()."""

    def __init__(self, cfg: RunConfig, backend: Backend, resume: bool = False, overwrite: bool = False) -> None:
        """In this order: resolve the config (device, data, batch arithmetic), take the run dir's lock and check it
        (free for a fresh run, the same run's data on --resume), and only then read --init_from weights and build
        the model: a run refused for its dir reads no weights."""
        t = cfg.train
        self.backend = backend
        backend.setup(t)  # device, threads, process group: rank and world_size are known from here on
        self.is_main = backend.rank == 0
        self.data_dir = self._data_dir(t)
        meta = load_meta(self.data_dir)
        self.tok = data_tokenizer(self.data_dir)
        self.masked = setup.is_chat(meta)  # conversations: the loss counts the assistant's tokens only (token_weights)
        self.run_dir = cfg.run_dir
        self.accum = setup.accumulation_steps(t, cfg.model.block_size, backend.world_size)  # block_size is final
        new_dir = not self.run_dir.exists()
        self._lock = lock_run_dir(self.run_dir) if self.is_main else None  # until run() ends (or we die)
        try:
            self._set_up(cfg, meta, resume, overwrite)
        except BaseException:
            if self._lock:  # a refused or failed set-up leaves the dir free at once, and a dir it made, gone
                self._lock.close()
                if new_dir:
                    unlock_new_run_dir(self.run_dir)
            raise
        self._pending: list = []  # losses of the steps since the last read-back, still on the device

    def _set_up(self, cfg: RunConfig, meta: dict, resume: bool, overwrite: bool) -> None:
        """With the lock held: check the dir, then read --init_from weights, build, and restore or start the run."""
        t, backend = cfg.train, self.backend
        if resume:
            check_run_data(self.run_dir, self.data_dir, meta)
        else:
            check_fresh(self.run_dir, overwrite)
        self.cfg, init = setup.run_model_config(cfg, self.data_dir, meta, resume)  # reads --init_from weights
        # a path or a chat task's dir is kept absolute, so --resume works from anywhere
        if t.data not in NAMED_DATA or Path(t.data).is_dir():
            self.cfg = replace(self.cfg, train=replace(self.cfg.train, data=str(self.data_dir.resolve())))
        setup.check_splits(self.data_dir, self.cfg)
        if self.masked and self.is_main:
            setup.check_conversations(self.data_dir, self.cfg, meta)
        self.tokens_per_step = t.batch_size * self.cfg.model.block_size * backend.world_size * self.accum
        backend.seed(t.seed)  # the same initial weights on every rank
        backend.build(self.cfg.model, t, init.tensors if init else None, str(init.path) if init else "")
        del init  # the source's weights are in the model now; hold them once
        self.batches = setup.train_batches(self.data_dir, self.cfg, backend.rank, backend.world_size, self.masked)
        if t.epochs and not resume:  # --epochs sets max_iters (a resumed run keeps its own, or --max_iters)
            steps = setup.epoch_steps(t, self.batches, self.tokens_per_step, self.data_dir)
            self.cfg = replace(self.cfg, train=replace(self.cfg.train, max_iters=steps))
        self.step, self.best_val, self.elapsed0 = 0, math.inf, 0.0
        self.last_eval = None  # the step last evaluated (a resumed run's first step was, by the run that saved it)
        if resume:
            self._restore()
        else:
            backend.seed(t.seed + backend.rank)  # dropout differs per rank
        if self.is_main:
            start_run_dir(self.run_dir, self.cfg, self.data_dir, meta, overwrite)

    def _data_dir(self, t: TrainConfig) -> Path:
        """The data dir; a named one is prepared on first use by rank 0 while the other ranks wait."""
        if self.is_main:
            path = setup.resolve_data(t)
        self.backend.barrier()
        return path if self.is_main else setup.resolve_data(t)

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train to max_iters (or until max_seconds or Ctrl-C), evaluating and checkpointing on the way."""
        t = self.cfg.train
        result = TrainResult(self.run_dir, self.step, best_val=self.best_val)
        self.t0 = self._t_log = time.perf_counter()
        self._bar = _progress_bar(t, self.step, self.is_main)
        self._peak = self.backend.peak_flops(t.peak_flops) if self.is_main and t.progress else None  # MFU: bar only
        if self._peak:
            self._flops_per_step = self.backend.flops_per_token(self.cfg.model.block_size) * self.tokens_per_step
        try:
            with Interrupt() as interrupt:
                stop = self._loop(result, interrupt)
                self._finish(stop, result)
                result.signal = interrupt.signum if stop is StopReason.INTERRUPTED else None
        finally:
            self._bar.close()
            if self.is_main and (self.run_dir / METRICS).is_file():
                from gptkit.training.plot import plot_metrics

                plot_metrics(self.run_dir / METRICS, self.run_dir / PLOT)
            if self._lock:
                self._lock.close()  # the run dir is free for the next run
        # Every rank waits for rank 0's plot here, so that no rank tears the process group down while another still
        # needs it (the torch backend's collectives also wait for gloo to let go of their tensors: runtime.released)
        self.backend.barrier()
        result.step, result.best_val, result.stopped = self.step, self.best_val, stop
        return result

    def _loop(self, result: TrainResult, interrupt: Interrupt) -> StopReason:
        """Evaluate when due, stop when told, else take a step; read the losses back every log_interval steps."""
        t = self.cfg.train
        while True:
            if self.step % t.eval_interval == 0 or self.step >= t.max_iters:
                self._evaluate(result)
            stop = StopReason.DONE if self.step >= t.max_iters else self._stop_reason(interrupt)
            if stop is not None:
                return stop
            self._pending.append(self.train_step())
            if self.step % t.log_interval == 0:
                self._read_losses(result)
            self._bar.update(1)

    def train_step(self):
        """One optimizer step over `accum` micro-batches; returns the backend's loss (still on the device)."""
        batches = [next(self.batches) for _ in range(self.accum)]
        lr = setup.lr_at(self.step, self.cfg.train)
        if self.masked:  # weights only for chat data, so a backend that never trains on it need not take them
            loss = self.backend.train_step(self.step, batches, lr, self.token_weights(batches))
        else:
            loss = self.backend.train_step(self.step, batches, lr)
        self.step += 1
        if self.cfg.train.ema_decay:
            self.backend.average(setup.ema_at(self.step, self.cfg.train.ema_decay))
        return loss

    @contextlib.contextmanager
    def averaged(self):
        """The averaged weights (train.ema_decay) in the backend's model within the block; without one, the model."""
        if not self.cfg.train.ema_decay:
            yield
            return
        self.backend.swap_average()
        try:
            yield
        finally:
            self.backend.swap_average()

    def token_weights(self, batches) -> list[float]:
        """Chat data: the weight of each micro-batch's mean loss so that the step's loss is the mean over every
        assistant token of the step, on every rank together (micro-batches hold different numbers of them), not a
        mean of means: count x micro-batches x ranks / the step's total count. With equal counts, each is 1."""
        counts = [int((y != -1).sum()) for _, y in batches]
        total = self.backend.total(sum(counts))  # the same on every rank: one collective per step
        n = len(batches) * self.backend.world_size
        return [c * n / total if total else 0.0 for c in counts]

    def _stop_reason(self, interrupt: Interrupt) -> StopReason | None:
        """INTERRUPTED (Ctrl-C on any rank), TIME (max_seconds of this invocation, so a resumed run gets its own
        budget) or None. Ranks agree at each log interval only, so that no step waits for a collective."""
        if self.backend.world_size > 1 and self.step % self.cfg.train.log_interval:
            return None
        code = 2 if interrupt.requested else 0
        limit = self.cfg.train.max_seconds
        if not code and limit and time.perf_counter() - self.t0 >= limit:
            code = 1
        return {0: None, 1: StopReason.TIME, 2: StopReason.INTERRUPTED}[self.backend.agree(code)]

    def _finish(self, stop: StopReason, result: TrainResult) -> None:
        """A run stopped by time evaluates where it stopped; an interrupted one checkpoints without evaluating."""
        if stop is StopReason.TIME:
            self._evaluate(result)
        elif stop is StopReason.INTERRUPTED:
            self._read_losses(result)
            self.save(LAST)

    def _read_losses(self, result: TrainResult) -> None:
        """Bring the pending losses to the host in one transfer: check them, keep them, show the last one."""
        if not self._pending:
            return
        values = self.backend.to_floats(self._pending)
        first = self.step - len(values) + 1  # the 1-based step of values[0]
        for k, value in enumerate(values):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the training loss became {value} at step {first + k}; stopped. The last good checkpoint "
                    f"({self.run_dir / LAST}) is kept; lower lr or raise warmup_iters")
        result.losses += values
        now = time.perf_counter()
        dt = (now - self._t_log) / len(values)  # seconds per step, the device's time included
        post = {"loss": f"{values[-1]:.4f}", "tok/s": f"{self.tokens_per_step / dt:,.0f}"}
        if self._peak:
            post["mfu"] = f"{100 * self._flops_per_step / dt / self._peak:.1f}%"
        self._bar.set_postfix(post, refresh=False)
        self._pending, self._t_log = [], now

    # -- evaluation and checkpoints ---------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Mean loss over eval_iters fixed batches (seed EVAL_SEED: the same at every evaluation, in every
        backend) of each split."""
        t = self.cfg.train
        out = {}
        for split in ("train", "val"):
            batches = setup.eval_batches(self.data_dir, split, self.cfg, EVAL_SEED, self.masked)
            out[split] = self.backend.eval_loss([next(batches) for _ in range(t.eval_iters)])
        return out

    def _evaluate(self, result: TrainResult) -> None:
        """Evaluate, checkpoint (last, and best when val improved), append to metrics.jsonl, print a sample."""
        if self.step == self.last_eval:
            return
        self._read_losses(result)  # a diverged run stops here, before its weights reach a checkpoint
        t = self.cfg.train
        with self.averaged():
            losses = self.evaluate()
        record = {"step": self.step, "tokens": self.step * self.tokens_per_step, "elapsed_s": round(self.elapsed(), 3),
                  "train_loss": losses["train"], "val_loss": losses["val"], "lr": setup.lr_at(max(self.step - 1, 0), t)}
        improved = losses["val"] < self.best_val
        self.best_val = min(self.best_val, losses["val"])
        if self.is_main:  # the record first: a kill before the checkpoint lands leaves a record that resume drops
            append_metrics(self.run_dir / METRICS, record)
        if self.step > 0:  # best before last: a kill between them resumes from an older last, which redoes both
            if improved:
                self.save(BEST)
            self.save(LAST)
        self.last_eval = self.step
        result.evals.append(record)
        if self.is_main and t.progress:
            self._bar.write(f"step {self.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                            f" ({record['elapsed_s']:.1f} s)", file=sys.stderr)
        if t.progress and t.sample_tokens and self.step > 0 and (self.is_main or self.backend.sharded):
            with self.averaged():  # a sharded model samples on every rank: each forward gathers the weights
                text = self.sample_text()
            if self.is_main:
                self._bar.write("-" * 40 + "\n" + text + "\n" + "-" * 40, file=sys.stderr)
        self._t_log = time.perf_counter()  # the next tok/s figure counts training time only

    def sample_text(self) -> str:
        """The prompt and sample_tokens tokens sampled from the model now (seed + step: never the training RNG)."""
        t = self.cfg.train
        prompt = self.tok.encode(t.sample_prompt) or [0]
        ids = self.backend.sample(prompt, t.sample_tokens, seed=t.seed + self.step, temperature=SAMPLE_TEMPERATURE,
                                  top_k=SAMPLE_TOP_K, stop_token=self.tok.eot_token)
        return t.sample_prompt + "".join(self.tok.decode_stream(ids))

    def save(self, name: str) -> None:
        """Write a checkpoint (every rank must call this: each sends its RNG and loader state to rank 0)."""
        ranks = self.backend.gather((self.batches.state_dict(), self.backend.rng_state()))
        weights = self.backend.weights()  # every rank: a sharded model gathers them
        tensors = _prefixed("model.", weights)
        if self.cfg.train.ema_decay:  # model. holds what was evaluated, the average, for every reader; live. resumes
            with self.averaged():  # copied: a backend's arrays may be views of the model's memory
                averaged = {k: v.copy() for k, v in self.backend.weights().items()}
            tensors = {**_prefixed("model.", averaged), **_prefixed("live.", weights)}
        optim, optim_meta = self.backend.optimizer_state()
        if not self.is_main:
            return
        tensors.update(_prefixed("optim.", optim))
        for r, (_, rng) in enumerate(ranks):
            tensors.update(_prefixed(f"rank{r}.", rng))
        meta = {"step": self.step, "best_val": None if math.isinf(self.best_val) else self.best_val,
                "elapsed_s": self.elapsed(), "model": self.cfg.model.__dict__, "train": self.cfg.train.__dict__,
                "backend": self.backend.name, "parallel": self.backend.parallel, **optim_meta,
                "ranks": [{"loader": loader} for loader, _ in ranks]}
        ckpt.save_checkpoint(self.run_dir / name, tensors, meta)

    def _restore(self) -> None:
        """Weights, optimizer, this rank's RNG and data position, and the counters, from the last checkpoint."""
        path = checkpoint_path(self.run_dir, "last")
        tensors, meta = ckpt.read_checkpoint(path)
        check_resumable(path, meta, self.backend.name, self.cfg.model)
        r, saved = self.backend.rank, [rank["loader"] for rank in meta["ranks"]]
        try:
            loader = self.batches.resume_state(saved, r)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        weights, live = ckpt.strip_prefix("model.", tensors), ckpt.strip_prefix("live.", tensors)
        if live:  # model. is the average (ema_decay, which a resume keeps), live. the weights training continues from
            self.backend.load_weights(weights, str(path))
            self.backend.swap_average()
        self.backend.load_weights(live or weights, str(path))
        self.backend.load_optimizer_state(ckpt.strip_prefix("optim.", tensors), meta)
        self.backend.seed(self.cfg.train.seed + r)  # a rank the saving run did not have: its own dropout stream
        if r < len(saved):
            self.backend.load_rng_state(ckpt.strip_prefix(f"rank{r}.", tensors))
        if loader is not None:
            self.batches.load_state_dict(loader)
        if self.is_main:
            self._say_layout(meta)
        self.step, self.elapsed0, self.last_eval = meta["step"], meta["elapsed_s"], meta["step"]
        self.best_val = math.inf if meta["best_val"] is None else meta["best_val"]
        truncate_metrics(self.run_dir / METRICS, self.step)

    def _say_layout(self, meta: dict) -> None:
        """One line when the run resumes in another layout than the one that saved it (process count, ddp/fsdp)."""
        world, parallel = len(meta["ranks"]), meta.get("parallel", "ddp" if len(meta["ranks"]) > 1 else "one")
        if (world, parallel) == (self.backend.world_size, self.backend.parallel):
            return
        t, block = self.cfg.train, self.cfg.model.block_size  # batch sizes do not change on a resume
        was = t.batch_size * block * world * setup.accumulation_steps(t, block, world)
        note = ""
        if was != self.tokens_per_step:
            note = f"; a step now takes {self.tokens_per_step:,} tokens (it took {was:,})"
        if world != self.backend.world_size and self.cfg.train.loader == "random" and not self.masked:
            note += "; random windows are drawn from each rank's own seed, so the batches differ from before"
        now = _layout(self.backend.world_size, self.backend.parallel)
        print(f"resuming step {meta['step']} of {_layout(world, parallel)} as {now}: the same weights, optimizer state "
              f"and data position; the losses may differ from an uninterrupted run's by rounding{note}",
              file=sys.stderr)


def _layout(world: int, parallel: str) -> str:
    return "one process" if world == 1 else f"{world} {parallel} processes"


def _prefixed(prefix: str, tensors: dict) -> dict:
    return {prefix + k: v for k, v in tensors.items()}


def _progress_bar(t, step: int, is_main: bool):
    from tqdm.auto import tqdm

    return tqdm(total=t.max_iters, initial=step, disable=not (is_main and t.progress), desc="train", unit="step",
                dynamic_ncols=True, file=sys.stderr)


def train_with(backend: Backend, cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or, with resume=True, continue) the run `cfg` describes on `backend`; returns what happened.
    A fresh run refuses a run dir that already holds a run unless overwrite=True."""
    try:
        return Run(cfg, backend, resume=resume, overwrite=overwrite).run()
    finally:
        backend.close()


# The backends by the name TrainConfig.backend takes: (module, Backend class, what to install). Imported by name
# when a run starts, so that this package never imports torch or mlx: the backends depend on the Run, not back.
BACKENDS = {"torch": ("gptkit.torch.backend", "TorchBackend", "pip install torch"),
            "mlx": ("gptkit.mlx.backend", "MLXBackend", 'pip install "gptkit[mlx]"')}


def train(cfg: RunConfig | str = DEFAULT_PRESET, resume: bool = False, overwrite: bool = False,
          **overrides) -> TrainResult:
    """Train the run `cfg` describes (a RunConfig, or a preset name or .toml path with field overrides) on the
    backend it names (`backend = "torch" | "mlx"`); with resume=True, continue it from its last checkpoint. A preset
    of two stages (a [finetune] table, e.g. "chat") runs both (train_stages); the result is the last one's.

    Example: train("shakespeare_char", max_iters=100, out_dir="runs/quick") is `gptkit train --max_iters=100
    --out_dir=runs/quick`, and train(cfg, resume=True) is `gptkit train --resume` for cfg's run dir.
    """
    import importlib

    if isinstance(cfg, str):
        given = [f"--{k}={v}" for k, v in overrides.items()]
        stages = load_stages(cfg, given)
        if len(stages) > 1:
            return train_stages(stages, resume=resume, overwrite=overwrite, overrides=given)
        cfg = stages[0]
    elif overrides:
        raise ValueError("field overrides go with a preset name; for a RunConfig, change it with dataclasses.replace")
    module, name, install = BACKENDS[cfg.train.backend]
    try:
        backend = getattr(importlib.import_module(module), name)()
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != cfg.train.backend:
            raise
        raise ValueError(f"the {cfg.train.backend} backend needs {e.name.split('.')[0]}: {install}") from None
    return train_with(backend, cfg, resume=resume, overwrite=overwrite)


def train_stages(stages: list[RunConfig], resume: bool = False, overwrite: bool = False,
                 overrides: list[str] | tuple = ()) -> TrainResult:
    """Run the stages of a preset one after the other (each from the one before: its init_from); returns the last
    stage's result, or the first that did not finish (Ctrl-C, max_seconds). A fresh start checks every stage's run
    dir first, so no stage trains for a later one to be refused. With resume, a stage whose dir holds a run continues
    it as it was saved, with those of `overrides` (the command's `--key=value`s) that a resume may change (a
    finished one has nothing to do), and a stage not started starts as `stages` says."""
    if not resume:
        for cfg in stages:
            check_fresh(cfg.run_dir, overwrite)
    resumable = setup.RESUMABLE - set(STAGE_FIELDS)
    again_with = [o for o in overrides if set().union(*parse_overrides([o])) <= resumable]
    for k, cfg in enumerate(stages, 1):
        if cfg.train.progress and os.environ.get("RANK", "0") == "0":
            print(f"stage {k} of {len(stages)}: {cfg.run_dir}" + (f" (from {cfg.train.init_from})" if k > 1 else ""),
                  file=sys.stderr)
        again = resume and (cfg.run_dir / LAST).is_file()
        result = train(setup.resume_config(cfg.run_dir, again_with) if again else cfg, resume=again,
                       overwrite=overwrite)
        if result.stopped is not StopReason.DONE:
            break
    return result
