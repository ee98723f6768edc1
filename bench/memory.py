"""Per-process memory of training, measured and predicted: what FSDP2 saves over DDP, and what `--dry-run` says.

    python bench/memory.py                 # measured on this CPU (gloo), then the dry-run table for gpt2 ... gpt2-xl
    python bench/memory.py --table-only    # just the table (the README's)

Measured: a 4-layer, 256-wide char model (block 128, batch 8, fp32, AdamW; then AdamW + Muon) trains 2 steps as one
process and as 2 fsdp ranks (torchrun, gloo); each rank records the bytes of the weights, gradients and optimizer
state it holds just before each optimizer step (when all three are held: gptkit.torch.fsdp.rank_bytes). Printed: each
rank's figures, rank 0's ratio to one process, and the dry-run's prediction for the same config (gptkit.torch.memory:
the same formula the table below uses).

The table: `gptkit train gpt2_124m --dry-run` with the GPT-2 family's shapes, bf16 on CUDA, 16 x 1,024 tokens per
micro-step and 524,288 per step (build-nanogpt's batch), for 1, 8 and 16 GPUs: the total per GPU with ddp, fsdp, and
fsdp with activation checkpointing. No GPU was used to make it; where a GPU run exists, the README says how they
compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ["--device=cpu", "--dtype=float32", "--data=shakespeare_char", "--loader=sequential", "--n_layer=4",
            "--n_head=4", "--n_embd=256", "--block_size=128", "--batch_size=8", "--dropout=0.0", "--max_iters=2",
            "--eval_interval=100", "--eval_iters=1", "--sample_tokens=0", "--progress=false", "--threads=1"]
FAMILY = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280), "gpt2-xl": (48, 25, 1600)}


def worker(out: str, overrides: list[str]) -> None:
    """Under torchrun (or alone): train, recording this rank's bytes before each optimizer step, into out.RANK.json."""
    from gptkit.config import load_run_config
    from gptkit.torch.backend import TorchBackend
    from gptkit.training.run import Run

    backend, held = TorchBackend(), []
    try:
        run = Run(load_run_config("shakespeare_char", overrides), backend)
        for opt in backend.optimizers.values():
            opt.register_step_pre_hook(lambda *_: held.append(backend.state_bytes()))
        run.run()
    finally:
        backend.close()
    Path(f"{out}.{os.environ.get('RANK', '0')}.json").write_text(json.dumps(held[-1]))


def measure(optimizer: str, tmp: Path) -> None:
    from gptkit.config import load_run_config
    from gptkit.data.prepare import load_meta, resolve_data_dir
    from gptkit.torch.memory import per_rank_bytes

    import torch

    over = [*MEASURED, f"--optimizer={optimizer}"]
    figures = {}
    for world in (1, 2):
        out = tmp / f"{optimizer}{world}"
        cmd = [sys.executable, __file__, "--worker", str(out), *over, f"--out_dir={tmp / out.name}",
               "--parallel=fsdp"]
        if world > 1:
            cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}"]
        subprocess.run(cmd, check=True, cwd=ROOT)
        figures[world] = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in range(world)]
    vocab = load_meta(resolve_data_dir("shakespeare_char"))["tokenizer"]["vocab_size"]
    cfg = load_run_config("shakespeare_char", [*over, f"--vocab_size={vocab}"])
    print(f"\n{optimizer}: bytes held just before an optimizer step (weights + gradients + optimizer state)")
    one = sum(figures[1][0].values())
    for world, ranks in figures.items():
        want = per_rank_bytes(cfg, world, "fsdp", 1, torch.float32)
        for r, b in enumerate(ranks):
            total = sum(b.values())
            print(f"  {'one process' if world == 1 else f'fsdp rank {r} of {world}':18s} weights {b['weights']:>10,}"
                  f"  gradients {b['gradients']:>10,}  optimizer {b['optimizer']:>10,}  total {total:>11,}"
                  f"  ({total / one:.3f} of one process)")
        predicted = want["weights"] + want["gradients"] + want["optimizer"]
        print(f"  {'dry-run, rank 0':18s} weights {want['weights']:>10,}  gradients {want['gradients']:>10,}  "
              f"optimizer {want['optimizer']:>10,}  total {predicted:>11,}  (AdamW's step counters not counted)")


def table() -> None:
    from dataclasses import replace

    from gptkit.config import load_run_config
    from gptkit.torch.memory import per_rank_bytes

    import torch

    base = ["--device=cuda", "--dtype=bfloat16", "--batch_size=16", "--total_batch_tokens=524288"]
    print("\nGiB per GPU (dry-run: bf16 on CUDA, 16 x 1,024 tokens per micro-step, 524,288 per step, AdamW)")
    print(f"{'model':12s} {'parameters':>14s} {'GPUs':>5s} {'ddp':>8s} {'fsdp':>8s} {'fsdp+AC':>8s}")
    for name, (layers, heads, width) in FAMILY.items():
        cfg = load_run_config("gpt2_124m", [*base, f"--n_layer={layers}", f"--n_head={heads}", f"--n_embd={width}"])
        ac = replace(cfg, train=replace(cfg.train, activation_checkpointing=True))
        for world in (1, 8, 16):
            accum = 524288 // (16 * 1024 * world)
            totals = [sum(per_rank_bytes(c, world, mode, accum, torch.bfloat16).values()) / 2**30
                      for c, mode in ((cfg, "ddp"), (cfg, "fsdp"), (ac, "fsdp"))]
            params = sum(p.numel() for p in _meta_model(cfg).parameters())
            print(f"{name:12s} {params:>14,} {world:>5d} " + " ".join(f"{t:8.1f}" for t in totals))


def _meta_model(cfg):
    import torch

    from gptkit.torch.model import build_model

    with torch.device("meta"):
        return build_model(cfg.model)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()
    if not args.table_only:
        with tempfile.TemporaryDirectory() as tmp:
            for optimizer in ("adamw", "muon"):
                measure(optimizer, Path(tmp))
    table()


if __name__ == "__main__":
    main()
