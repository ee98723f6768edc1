"""The MLX backend of a training run: `train(cfg)` runs gptkit.training.run.Run (eval cadence, checkpoints, max_seconds,
Ctrl-C, metrics.jsonl, loss.png, the LR schedule and accumulation) with MLXBackend, gptkit.training.backend.Backend in
MLX. The micro-step's loss and gradients are always compiled with `mx.compile`.

The optimizers are the torch backend's written out (gptkit.mlx.optim: torch.optim.AdamW's update with gptkit's
decay groups, and gptkit.torch.optim.Muon's), and clipping is torch's clip_grad_norm_, so one step from the same state
gives the same weights in both backends. Checkpoints are gptkit's format: any
backend samples from them; `--resume` continues with the backend that wrote the checkpoint.

One process (MLX has no DDP here); fp32. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.mlx.generate import generate
from gptkit.mlx.model import build_model, loss_fn
from gptkit.mlx.optim import AdamW, Muon, clip_grad_norm
from gptkit.mlx.weights import load_weights, model_tensors
from gptkit.training.backend import Backend, Batch, joined, takes_muon
from gptkit.training.run import TrainResult, train_with


class MLXBackend(Backend):
    """A GPT and the torch backend's optimizers (AdamW, Muon) in MLX, on one process."""

    name = "mlx"

    def seed(self, seed: int) -> None:
        mx.random.seed(seed)

    def build(self, model: GPTConfig, t: TrainConfig, init: dict[str, np.ndarray] | None, source: str) -> None:
        self.model = build_model(model)
        if init is not None:
            load_weights(self.model, init, source=source)
        self.optimizer, self.muon = AdamW(t), Muon(t) if t.optimizer == "muon" else None
        self.seed0, self.grad_clip, self.muon_lr_scale = t.seed, t.grad_clip, t.muon_lr / t.lr
        self._grad = self._grad_fn()
        self.averaged = dict(tree_flatten(self.model.trainable_parameters())) if t.ema_decay else {}

    def _grad_fn(self):
        """(loss, grads) of a micro-batch, compiled with the model's parameters and the RNG (dropout) as state.
        Always compiled: mx.compile traces in well under a second (the `compile` field is torch.compile's)."""
        value_and_grad = nn.value_and_grad(self.model, loss_fn)

        def fn(x, y):
            return value_and_grad(self.model, x, y)

        state = [self.model.state, mx.random.state]
        return partial(mx.compile, inputs=state, outputs=state)(fn)

    def train_step(self, step: int, batches: Sequence[Batch], lr: float, weights=None) -> mx.array:
        total, acc = 0.0, None
        for micro, (x, y) in enumerate(batches):
            # dropout's randomness is a function of (seed, step, micro-step), so a resumed run draws the same masks
            # (MLX's global RNG state cannot be set back from a checkpoint)
            mx.random.seed((self.seed0 * 1_000_003 + step * 1_009 + micro) % 2**32)
            loss, grads = self._grad(mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32)))
            grads = dict(tree_flatten(grads))
            if weights is not None:  # chat data: each micro-batch counts by its assistant tokens
                loss, grads = loss * weights[micro], {k: g * weights[micro] for k, g in grads.items()}
            acc = grads if acc is None else {k: acc[k] + g for k, g in grads.items()}
            total = total + loss
        grads = {k: g / len(batches) for k, g in acc.items()}
        if self.grad_clip > 0:
            grads, _ = clip_grad_norm(grads, self.grad_clip)
        params = dict(tree_flatten(self.model.trainable_parameters()))
        muon = {k: p for k, p in params.items() if self.muon and takes_muon(k, p.ndim)}
        new = self.optimizer.update({k: p for k, p in params.items() if k not in muon}, grads, lr)
        if muon:  # the same schedule at Muon's own peak
            new.update(self.muon.update(muon, grads, lr * self.muon_lr_scale))
        self.model.update(tree_unflatten(list(new.items())))
        loss = total / len(batches)
        mx.eval(loss, self.model.parameters(), self.optimizer.state, self.muon.state if self.muon else [])
        return loss

    def eval_loss(self, batches: Sequence[Batch]) -> float:
        self.model.train(False)
        losses = [loss_fn(self.model, mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32))) * n
                  for x, y, n in joined(batches)]  # as the torch backend: a join of n batches counts n times
        self.model.train(True)
        return sum(mx.stack(losses).tolist()) / len(batches)

    def sample(self, prompt: list[int], max_new_tokens: int, *, seed: int, temperature: float, top_k: int | None,
               stop_token: int | None) -> list[int]:
        self.model.train(False)
        try:
            return generate(self.model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                            stop_token=stop_token)
        finally:
            self.model.train(True)

    def average(self, decay: float) -> None:
        live = dict(tree_flatten(self.model.trainable_parameters()))
        self.averaged = {k: a + (1 - decay) * (live[k] - a) for k, a in self.averaged.items()}  # torch's lerp_
        mx.eval(self.averaged)

    def swap_average(self) -> None:
        live = dict(tree_flatten(self.model.trainable_parameters()))
        self.model.update(tree_unflatten(list(self.averaged.items())))
        self.averaged = live

    def weights(self) -> dict[str, np.ndarray]:
        return model_tensors(self.model)

    def load_weights(self, tensors: dict[str, np.ndarray], source: str) -> None:
        load_weights(self.model, tensors, source)

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """`<param name>.exp_avg` / `.exp_avg_sq` (AdamW) and `.momentum_buffer` (Muon) arrays + AdamW's step count."""
        tensors = {}
        for k, (m, v) in self.optimizer.state.items():
            tensors[f"{k}.exp_avg"], tensors[f"{k}.exp_avg_sq"] = np.array(m), np.array(v)
        for k, buf in (self.muon.state if self.muon else {}).items():
            tensors[f"{k}.momentum_buffer"] = np.array(buf)
        return tensors, {"optimizer_step": self.optimizer.step}

    def load_optimizer_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        for k in tensors:
            if k.endswith(".exp_avg"):
                name = k.removesuffix(".exp_avg")
                self.optimizer.state[name] = (mx.array(tensors[k]), mx.array(tensors[f"{name}.exp_avg_sq"]))
            elif k.endswith(".momentum_buffer"):
                self.muon.state[k.removesuffix(".momentum_buffer")] = mx.array(tensors[k])
        self.optimizer.step = meta["optimizer_step"]


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or continue) the run `cfg` describes with MLX; see gptkit.torch.backend.train."""
    return train_with(MLXBackend(), cfg, resume=resume, overwrite=overwrite)
