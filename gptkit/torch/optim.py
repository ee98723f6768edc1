"""The optimizers of the PyTorch backend: AdamW with gptkit's decay groups, and Muon for the matrices inside the
blocks (AdamW keeps embeddings, the head, norms and biases), each group with its own peak LR.

Muon (Keller Jordan, 2024; modded-nanogpt): momentum, then the update's nearest semi-orthogonal matrix by five
Newton-Schulz steps, scaled by sqrt(max(1, rows / cols)). torch ships torch.optim.Muon, and it is not used here:
its Newton-Schulz always runs in bfloat16, which CPUs without native bf16 (AVX2 only) emulate ~100x slower than
fp32 and which would differ from the MLX backend's fp32 (gptkit.mlx.optim holds the same update, and a test
holds both to it). Here it runs in the run's own precision: bf16 when the run trains in bf16 (CUDA, and CPUs
with native bf16: as torch's and modded-nanogpt's do), fp32 otherwise.

Not here: the LR schedule (gptkit.training.setup.lr_at), which the backend applies to both peaks alike.
"""

from __future__ import annotations

import math
from inspect import unwrap  # torch's function under its dynamo wrappers (functools.wraps)

import torch

from gptkit.config import TrainConfig
from gptkit.training.backend import NS_COEFFICIENTS, NS_STEPS, takes_muon


def newton_schulz(G: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An approximation of U V^T for G = U S V^T (singular values pushed into ~[0.7, 1.2]), in `dtype`; G (r, c), or a
    stack (n, r, c) of same-shaped matrices, each orthogonalized on its own (one batched matmul instead of n).

    Example: G = diag(3, 0.5) -> about diag(1, 1) (each singular value moves towards 1).
    """
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1: inside the basin
    if dtype == torch.float32 and X.size(-1) >= 2 * X.size(-2):
        X = _gram_iterations(X, steps)
    else:
        a, b, c = NS_COEFFICIENTS
        for _ in range(steps):
            A = X @ X.mT
            X = a * X + (b * A + c * (A @ A)) @ X
    return (X.mT if tall else X).to(G.dtype)


def _gram_iterations(X: torch.Tensor, steps: int) -> torch.Tensor:
    """The same iterations as newton_schulz's loop for a wide X (n, m), m >= 2n, on n x n matrices only: each step is
    X <- P X with P = a + b A + c A^2 a polynomial in A = X X^T, so X_k = Q_k X_0 with Q_k = P_k ... P_1, and A moves
    as A <- P A P (P commutes with A). Two products with the (n, m) matrix in all (X X^T, then Q X) instead of two per
    step: a third to a half fewer flops for Muon's 1:3 and 1:4 matrices. In fp32 only: in bf16 the products of P
    drift (the Gram form needs restarts there), so bf16 keeps the plain loop."""
    a, b, c = NS_COEFFICIENTS
    A = X @ X.mT
    eye = torch.eye(A.size(-1), dtype=A.dtype, device=A.device)
    Q = None
    for k in range(steps):
        P = torch.baddbmm(b * A + a * eye, A, A, alpha=c) if A.dim() == 3 else a * eye + b * A + c * (A @ A)
        Q = P if Q is None else P @ Q
        if k < steps - 1:
            A = P @ A @ P
    return Q @ X


class Eager:
    """torch.optim.Optimizer's methods without importing torch._dynamo, for optimizers placed before it in the MRO.

    torch.optim's optimizers import torch._dynamo on their first call (a large part of a small run's start, after
    importing torch itself) only to keep dynamo out of add_param_group, zero_grad, state_dict and
    load_state_dict, and to mark graph breaks around step: no-ops while nothing compiles them, and gptkit compiles
    models, never optimizer steps. Here those methods are torch's own functions, unwrapped; the step hooks, the state
    dict and the update are torch's. A run that compiles a model imports dynamo anyway."""

    add_param_group = unwrap(torch.optim.Optimizer.add_param_group)
    zero_grad = unwrap(torch.optim.Optimizer.zero_grad)
    state_dict = unwrap(torch.optim.Optimizer.state_dict)
    load_state_dict = unwrap(torch.optim.Optimizer.load_state_dict)


class AdamW(Eager, torch.optim.AdamW):
    """torch.optim.AdamW with Eager's methods; step is torch's update under no_grad (torch's wrapper sets grad mode to
    the `differentiable` flag, which gptkit leaves False, between two dynamo graph breaks)."""

    step = torch.no_grad()(unwrap(torch.optim.AdamW.step))


class Muon(Eager, torch.optim.Optimizer):
    """Muon for 2-D parameters: buf = m buf + (1 - m) g; u = (1 - m) g + m buf (Nesterov); p -= lr s NS(u), with
    s = sqrt(max(1, rows / cols)), after p *= 1 - lr wd (decoupled weight decay, as AdamW's; wd 0 = none). The state
    is one momentum buffer per matrix (saved with the checkpoint)."""

    def __init__(self, params, lr: float, momentum: float = 0.95, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.float32, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D weights only; got a parameter of shape {tuple(p.shape)}")

    def __setstate__(self, state: dict) -> None:
        """load_state_dict's groups as saved: a checkpoint from before the weight decay has no key (as torch's own
        optimizers default the keys they added since)."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("weight_decay", 0.0)

    def updates(self, group: dict, view=lambda t: t) -> dict[tuple, list]:
        """Momentum steps of a param group's matrices, and their updates before Newton-Schulz, grouped by shape (same-
        shaped matrices, one per layer, share one batched Newton-Schulz): {shape: [(param, update), ...]}. `view`
        gives the tensors the arithmetic runs on (a sharded weight's local rows: gptkit.torch.fsdp.ShardedMuon)."""
        m, by_shape = group["momentum"], {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf, g = view(state["momentum_buffer"]), view(p.grad)
            buf.lerp_(g, 1 - m)
            by_shape.setdefault(tuple(p.shape), []).append((p, g.lerp(buf, m) if group["nesterov"] else buf))
        return by_shape

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for (rows, cols), items in self.updates(group).items():
                ortho = newton_schulz(torch.stack([u for _, u in items]), dtype=self.ns_dtype)  # (n, rows, cols)
                scale = math.sqrt(max(1.0, rows / cols))
                for (p, _), o in zip(items, ortho):
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(o, alpha=-group["lr"] * scale)


def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ (the 2-norm) for one process's CPU tensors, the same numbers: the norm of the
    per-tensor norms, and the gradients scaled by max_norm / (norm + 1e-6) where that is below 1. torch multiplies them
    by the coefficient clamped to 1 every step, one pass over every gradient, so as not to read the norm on the host;
    a CPU reads it for free and skips the pass when there is nothing to clip. Returns the norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    coef = max_norm / (norm + 1e-6)
    if not coef >= 1:  # a NaN norm scales by NaN, as torch's does
        torch._foreach_mul_(grads, coef)
    return norm


def configure_optimizers(model: torch.nn.Module, t: TrainConfig, device: torch.device,
                         dtype: torch.dtype = torch.float32, muon: type = Muon) -> dict[str, torch.optim.Optimizer]:
    """{"adamw": ...} or, with optimizer="muon", {"adamw": ..., "muon": ...}, at their peak learning rates.
    Muon's Newton-Schulz runs in bf16 when the run trains in bf16 (dtype), else in fp32. `muon`: the Muon class (a
    sharded model takes gptkit.torch.fsdp.ShardedMuon).

    AdamW decays tensors with >= 2 dims (matmul weights, embeddings), never biases and norms.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [p for n, p in named if t.optimizer == "muon" and takes_muon(n, p.dim())]
    rest = [p for n, p in named if not any(p is q for q in matrices)]
    groups = [
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
    ]
    # fused: one kernel over all tensors, on CUDA and on CPUs (torch's default there is a loop of ops per tensor)
    out = {"adamw": AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=device.type in ("cuda", "cpu"))}
    if t.optimizer == "muon":
        if not matrices:
            raise ValueError("train.optimizer='muon' needs 2-D weights inside transformer blocks; this model has none "
                             "(use optimizer='adamw')")
        ns_dtype = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
        out["muon"] = muon(matrices, lr=t.muon_lr, momentum=t.muon_momentum, ns_dtype=ns_dtype,
                           weight_decay=t.muon_weight_decay)
    return out
