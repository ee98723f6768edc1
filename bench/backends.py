"""Tokens/s of the same model and batch in MLX and PyTorch, side by side (training step and a forward pass).

    python bench/backends.py                      # nanoGPT's CPU char model: 4L/4H/128, block 64, batch 12
    python bench/backends.py --n_layer 6 --n_embd 384 --block_size 256 --batch_size 8

On Linux the MLX backend is the `mlx[cpu]` wheel; on Apple silicon the same script measures Metal (MLX's
default device) against torch on the CPU (or --torch-device mps). Also prints each backend's fp32 matmul
GFLOP/s, which explains most of the gap on Linux, where mlx[cpu] links a reference BLAS. A faster BLAS
without rebuilding MLX (README, "The MLX backend"): `pip install mkl`, then run this script with
MKL_THREADING_LAYER=GNU LD_PRELOAD=$VIRTUAL_ENV/lib/libmkl_rt.so.3.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def torch_figures(args) -> dict:
    import torch

    from gptkit.config import GPTConfig, TrainConfig
    from gptkit.torch.model import GPT
    from gptkit.torch.optim import configure_optimizers

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                    n_embd=args.n_embd, bias=False, gelu="exact")
    dev = torch.device(args.torch_device)
    model = GPT(cfg).to(dev)
    opt = configure_optimizers(model, TrainConfig(), dev)["adamw"]
    x = torch.randint(0, 65, (args.batch_size, args.block_size), device=dev)

    def step():
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type != "cpu":
            torch.mps.synchronize() if dev.type == "mps" else torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            model(x)

    a = torch.randn(512, 512, device=dev)
    return {"train": _rate(step, args), "forward": _rate(forward, args), "matmul": _gflops(lambda: a @ a)}


def mlx_figures(args) -> dict:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_unflatten

    from gptkit.config import GPTConfig, TrainConfig
    from gptkit.mlx.backend import AdamW
    from gptkit.mlx.model import GPT, loss_fn

    mx.random.seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                    n_embd=args.n_embd, bias=False, gelu="exact")
    model = GPT(cfg)
    opt = AdamW(TrainConfig())
    x = mx.array(np.random.default_rng(0).integers(0, 65, (args.batch_size, args.block_size)).astype(np.int32))
    vg = nn.value_and_grad(model, loss_fn)
    state = [model.state, mx.random.state]  # as gptkit.mlx.backend compiles its micro-step
    grad = mx.compile(lambda a, b: vg(model, a, b), inputs=state, outputs=state)

    def step():
        loss, grads = grad(x, x)
        params = dict(tree_flatten(model.trainable_parameters()))
        model.update(tree_unflatten(list(opt.update(params, dict(tree_flatten(grads)), 1e-3).items())))
        mx.eval(model.parameters(), loss)

    def forward():
        mx.eval(model(x))

    a = mx.random.normal((512, 512))
    return {"train": _rate(step, args), "forward": _rate(forward, args),
            "matmul": _gflops(lambda: mx.eval(a @ a)), "device": str(mx.default_device())}


def _rate(fn, args) -> float:
    for _ in range(args.warmup):
        fn()
    t = time.perf_counter()
    for _ in range(args.steps):
        fn()
    return args.batch_size * args.block_size * args.steps / (time.perf_counter() - t)


def _gflops(fn, n: int = 20) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return 2 * 512**3 * n / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n_layer", type=int, default=4)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=128)
    ap.add_argument("--block_size", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--torch-device", default="cpu")
    args = ap.parse_args()
    t, m = torch_figures(args), mlx_figures(args)
    print(f"## {args.n_layer}L/{args.n_head}H/{args.n_embd}, block {args.block_size}, batch {args.batch_size}, fp32; "
          f"torch on {args.torch_device}, mlx on {m['device']}")
    print(f"{'':18s}{'torch':>12s}{'mlx':>12s}{'mlx/torch':>12s}")
    for key, unit in (("train", "tok/s"), ("forward", "tok/s"), ("matmul", "GFLOP/s")):
        print(f"{key + ' ' + unit:18s}{t[key]:12,.0f}{m[key]:12,.0f}{m[key] / t[key]:12.3f}")


if __name__ == "__main__":
    main()
