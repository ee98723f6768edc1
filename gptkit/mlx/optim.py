"""The optimizers of the MLX backend, written out so that one step from the same state gives the same weights as
the PyTorch backend's: torch.optim.AdamW's update (gptkit's decay groups) and gptkit.torch.optim.Muon's.

mlx.optimizers ships AdamW and Muon, and they are not used here: MLX's AdamW differs from torch's in where epsilon
and the bias correction enter, and MLX's Muon adds weight decay to the gradient (torch's decays the weights), so
neither would match the torch backend step for step. Parameters are passed by gptkit name. Never imports torch.
"""

from __future__ import annotations

import math

import mlx.core as mx

from gptkit.config import TrainConfig
from gptkit.training.backend import NS_COEFFICIENTS, NS_STEPS

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


def newton_schulz(G: mx.array, steps: int = NS_STEPS) -> mx.array:
    """gptkit.torch.optim.newton_schulz in MLX, in fp32: an approximation of U V^T for G = U S V^T."""
    a, b, c = NS_COEFFICIENTS
    X = G.astype(mx.float32)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / (mx.linalg.norm(X) + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if tall else X


class Muon:
    """gptkit.torch.optim.Muon's update, parameter by name: Nesterov momentum, Newton-Schulz, sqrt(max(1,
    rows/cols)), decoupled weight decay."""

    def __init__(self, t: TrainConfig) -> None:
        self.momentum, self.weight_decay = t.muon_momentum, t.muon_weight_decay
        self.state: dict[str, mx.array] = {}  # name -> momentum buffer

    def update(self, params: dict[str, mx.array], grads: dict[str, mx.array], lr: float) -> dict[str, mx.array]:
        m, out = self.momentum, {}
        for name, p in params.items():
            g = grads[name]
            buf = self.state.get(name)
            buf = (1 - m) * g if buf is None else buf + (1 - m) * (g - buf)  # torch's lerp
            self.state[name] = buf
            update = g + m * (buf - g)  # Nesterov: torch's grad.lerp(buf, m)
            scale = math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
            if self.weight_decay:
                p = p * (1 - lr * self.weight_decay)
            out[name] = p - lr * scale * newton_schulz(update)
        return out
