"""Training in MLX: `train(cfg)` runs the same loop as gptkit.train (runs.RunLoop: eval cadence, checkpoints,
max_seconds, Ctrl-C, metrics.jsonl, loss.png) with the same config fields, data loaders, LR schedule and
accumulation, on an MLX model. The micro-step's loss and gradients are always compiled with `mx.compile`.

The optimizer is torch.optim.AdamW's update written out (bias-corrected moments, decoupled weight decay on
parameters with >= 2 dims only, gptkit's decay groups), and clipping is torch's clip_grad_norm_, so one
step from the same state gives the same weights in both backends. Checkpoints are gptkit's format: any
backend samples from them; `--resume` continues with the backend that wrote the checkpoint.

One process (MLX has no DDP here); fp32. Never imports torch.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from gptkit import checkpoint as ckpt
from gptkit.config import RunConfig, TrainConfig
from gptkit.data import data_tokenizer, load_meta, resolve_data_dir
from gptkit.mlx.model import build_model, load_weights, loss_fn, model_tensors
from gptkit.mlx.sample import stream_text
from gptkit.runs import (RunLoop, TrainResult, accumulation_steps, lr_at, run_model_config,
                         start_run_dir, train_batches)

EPS = 1e-8  # torch.optim.AdamW's default


class AdamW:
    """torch.optim.AdamW's update, parameter by name; weight decay only on parameters with >= 2 dims."""

    def __init__(self, t: TrainConfig) -> None:
        self.beta1, self.beta2, self.weight_decay = t.beta1, t.beta2, t.weight_decay
        self.step = 0
        self.state: dict[str, tuple[mx.array, mx.array]] = {}  # name -> (exp_avg, exp_avg_sq)

    def update(self, params: dict[str, mx.array], grads: dict[str, mx.array], lr: float) -> dict[str, mx.array]:
        self.step += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr / (1 - b1 ** self.step)
        c2_sqrt = math.sqrt(1 - b2 ** self.step)
        out = {}
        for name, p in params.items():
            g = grads[name]
            m, v = self.state.get(name) or (mx.zeros_like(p), mx.zeros_like(p))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            if p.ndim >= 2 and self.weight_decay:
                p = p * (1 - lr * self.weight_decay)
            out[name] = p - step_size * m / (mx.sqrt(v) / c2_sqrt + EPS)
            self.state[name] = (m, v)
        return out


def clip_grad_norm(grads: dict[str, mx.array], max_norm: float) -> tuple[dict[str, mx.array], mx.array]:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, max_norm / (total L2 norm + 1e-6))."""
    total = mx.sqrt(sum((g.astype(mx.float32) ** 2).sum() for g in grads.values()))
    coef = mx.minimum(max_norm / (total + 1e-6), 1.0)
    return {k: g * coef for k, g in grads.items()}, total


class Trainer(RunLoop):
    """One MLX run: set up from a RunConfig (fresh or resumed), then `run()`."""

    BACKEND = "mlx"

    def __init__(self, cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> None:
        t = cfg.train
        self.data_dir = resolve_data_dir(t.data)
        meta = load_meta(self.data_dir)
        self.tok = data_tokenizer(self.data_dir)
        self.cfg, init = run_model_config(cfg, self.data_dir, meta, resume)
        self.is_main = True
        self.run_dir = Path(t.out_dir or f"runs/{cfg.name}")
        self.accum = accumulation_steps(t, cfg.model.block_size, 1)
        self.tokens_per_step = t.batch_size * cfg.model.block_size * self.accum
        mx.random.seed(t.seed)
        self.model = build_model(self.cfg.model)
        if init is not None:
            load_weights(self.model, init.tensors, source=str(init.path))
            init.tensors = {}
        self.optimizer = AdamW(t)
        self.train_batches = train_batches(self.data_dir, self.cfg)
        self._resume_or_start(resume, overwrite, meta)
        self._grad = self._grad_fn()
        start_run_dir(self.run_dir, self.cfg, self.data_dir, meta, overwrite)

    def _grad_fn(self):
        """(loss, grads) of a micro-batch, compiled with the model's parameters and the RNG (dropout) as state.
        Always compiled: mx.compile traces in well under a second (the `compile` field is torch.compile's)."""
        value_and_grad = nn.value_and_grad(self.model, loss_fn)

        def fn(x, y):
            return value_and_grad(self.model, x, y)

        state = [self.model.state, mx.random.state]
        return partial(mx.compile, inputs=state, outputs=state)(fn)

    # -- checkpoints ------------------------------------------------------------------------------

    def save(self, name: str) -> None:
        tensors = {f"model.{k}": v for k, v in model_tensors(self.model).items()}
        for k, (m, v) in self.optimizer.state.items():
            tensors[f"optim.{k}.exp_avg"] = np.array(m)
            tensors[f"optim.{k}.exp_avg_sq"] = np.array(v)
        meta = self._checkpoint_meta(optimizer_step=self.optimizer.step,
                                     ranks=[{"loader": self.train_batches.state_dict()}])
        ckpt.save_checkpoint(self.run_dir / name, tensors, meta)

    def _resume(self) -> None:
        path, tensors, meta = self._read_last_checkpoint()
        load_weights(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
        for k in tensors:
            if k.startswith("optim.") and k.endswith(".exp_avg"):
                name = k[len("optim."):-len(".exp_avg")]
                self.optimizer.state[name] = (mx.array(tensors[k]), mx.array(tensors[f"optim.{name}.exp_avg_sq"]))
        self.optimizer.step = meta["optimizer_step"]
        self.train_batches.load_state_dict(meta["ranks"][0]["loader"])
        self._restore_counters(meta)

    # -- steps ------------------------------------------------------------------------------------

    def train_step(self) -> float:
        t = self.cfg.train
        lr = lr_at(self.step, t)
        total, acc = 0.0, None
        for micro in range(self.accum):
            # dropout's randomness is a function of (seed, step, micro-step), so a resumed run draws the same masks
            # (MLX's global RNG state cannot be set back from a checkpoint)
            mx.random.seed((t.seed * 1_000_003 + self.step * 1_009 + micro) % 2**32)
            x, y = (mx.array(a.astype(np.int32)) for a in next(self.train_batches))
            loss, grads = self._grad(x, y)
            grads = dict(tree_flatten(grads))
            acc = grads if acc is None else {k: acc[k] + g for k, g in grads.items()}
            total = total + loss
        value = (total / self.accum).item()
        if not math.isfinite(value):
            raise self._diverged(value)
        grads = {k: g / self.accum for k, g in acc.items()}
        if t.grad_clip > 0:
            grads, _ = clip_grad_norm(grads, t.grad_clip)
        params = dict(tree_flatten(self.model.trainable_parameters()))
        self.model.update(tree_unflatten(list(self.optimizer.update(params, grads, lr).items())))
        mx.eval(self.model.parameters(), [s for pair in self.optimizer.state.values() for s in pair])
        self.step += 1
        return value

    def _eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return loss_fn(self.model, mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32))).item()

    def sample_text(self) -> str:
        t = self.cfg.train
        prompt = self.tok.encode(t.sample_prompt) or [0]
        text = "".join(stream_text(self.model, self.tok, prompt, t.sample_tokens, temperature=0.8, top_k=200,
                                   seed=t.seed + self.step))
        return t.sample_prompt + text

    # -- hooks of runs.RunLoop ----------------------------------------------------------------------

    def _set_mode(self, train: bool) -> None:
        self.model.train(train)

    def _agree(self, code: float) -> float:
        return code

    def _mfu_figures(self) -> tuple[None, float]:
        return None, 0.0


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or continue) the run `cfg` describes with MLX; see gptkit.train.train."""
    return Trainer(cfg, resume=resume, overwrite=overwrite).run()
