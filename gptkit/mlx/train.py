"""The MLX backend of a training run: `train(cfg)` runs gptkit.runs.Run (eval cadence, checkpoints, max_seconds,
Ctrl-C, metrics.jsonl, loss.png, the LR schedule and accumulation) with MLXBackend, gptkit.backend.Backend in
MLX. The micro-step's loss and gradients are always compiled with `mx.compile`.

The optimizer is torch.optim.AdamW's update written out (bias-corrected moments, decoupled weight decay on
parameters with >= 2 dims only, gptkit's decay groups), and clipping is torch's clip_grad_norm_, so one
step from the same state gives the same weights in both backends. Checkpoints are gptkit's format: any
backend samples from them; `--resume` continues with the backend that wrote the checkpoint.

One process (MLX has no DDP here); fp32. Never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from gptkit.backend import Backend, Batch
from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.mlx.model import build_model, loss_fn
from gptkit.mlx.sample import generate
from gptkit.mlx.weights import load_weights, model_tensors
from gptkit.runs import TrainResult, train_with

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


class MLXBackend(Backend):
    """A GPT and torch's AdamW update in MLX, on one process."""

    name = "mlx"

    def seed(self, seed: int) -> None:
        mx.random.seed(seed)

    def build(self, model: GPTConfig, t: TrainConfig, init: dict[str, np.ndarray] | None, source: str) -> None:
        self.model = build_model(model)
        if init is not None:
            load_weights(self.model, init, source=source)
        self.optimizer = AdamW(t)
        self.seed0, self.grad_clip = t.seed, t.grad_clip
        self._grad = self._grad_fn()

    def _grad_fn(self):
        """(loss, grads) of a micro-batch, compiled with the model's parameters and the RNG (dropout) as state.
        Always compiled: mx.compile traces in well under a second (the `compile` field is torch.compile's)."""
        value_and_grad = nn.value_and_grad(self.model, loss_fn)

        def fn(x, y):
            return value_and_grad(self.model, x, y)

        state = [self.model.state, mx.random.state]
        return partial(mx.compile, inputs=state, outputs=state)(fn)

    def train_step(self, step: int, batches: Sequence[Batch], lr: float) -> mx.array:
        total, acc = 0.0, None
        for micro, (x, y) in enumerate(batches):
            # dropout's randomness is a function of (seed, step, micro-step), so a resumed run draws the same masks
            # (MLX's global RNG state cannot be set back from a checkpoint)
            mx.random.seed((self.seed0 * 1_000_003 + step * 1_009 + micro) % 2**32)
            loss, grads = self._grad(mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32)))
            grads = dict(tree_flatten(grads))
            acc = grads if acc is None else {k: acc[k] + g for k, g in grads.items()}
            total = total + loss
        grads = {k: g / len(batches) for k, g in acc.items()}
        if self.grad_clip > 0:
            grads, _ = clip_grad_norm(grads, self.grad_clip)
        params = dict(tree_flatten(self.model.trainable_parameters()))
        self.model.update(tree_unflatten(list(self.optimizer.update(params, grads, lr).items())))
        loss = total / len(batches)
        mx.eval(loss, self.model.parameters(), [s for pair in self.optimizer.state.values() for s in pair])
        return loss

    def eval_loss(self, batches: Sequence[Batch]) -> float:
        self.model.train(False)
        losses = [loss_fn(self.model, mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32))) for x, y in batches]
        self.model.train(True)
        return sum(mx.stack(losses).tolist()) / len(losses)

    def sample(self, prompt: list[int], max_new_tokens: int, *, seed: int, temperature: float, top_k: int | None,
               stop_token: int | None) -> list[int]:
        stream = generate(self.model, mx.array([prompt]), max_new_tokens, temperature=temperature, top_k=top_k,
                          seed=seed, stop_token=stop_token)
        return [int(nxt[0].item()) for nxt in stream]

    def weights(self) -> dict[str, np.ndarray]:
        return model_tensors(self.model)

    def load_weights(self, tensors: dict[str, np.ndarray], source: str) -> None:
        load_weights(self.model, tensors, source)

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """`<param name>.exp_avg` / `.exp_avg_sq` arrays + the step count."""
        tensors = {}
        for k, (m, v) in self.optimizer.state.items():
            tensors[f"{k}.exp_avg"], tensors[f"{k}.exp_avg_sq"] = np.array(m), np.array(v)
        return tensors, {"optimizer_step": self.optimizer.step}

    def load_optimizer_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        for k in tensors:
            if k.endswith(".exp_avg"):
                name = k.removesuffix(".exp_avg")
                self.optimizer.state[name] = (mx.array(tensors[k]), mx.array(tensors[f"{name}.exp_avg_sq"]))
        self.optimizer.step = meta["optimizer_step"]


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or continue) the run `cfg` describes with MLX; see gptkit.train.train."""
    return train_with(MLXBackend(), cfg, resume=resume, overwrite=overwrite)
