"""Wall time to a target val loss on character-level tiny Shakespeare, gptkit against nanoGPT, side by side.

    python bench/speedrun.py                              # the default preset; nanoGPT's figure quoted
    python bench/speedrun.py --nanogpt ~/src/nanoGPT      # also runs nanoGPT's own train.py, its CPU recipe
    python bench/speedrun.py --ablation                   # the README's table: options one at a time
    python bench/speedrun.py --ablation --only grouped     # only the ablation rows naming grouped-query attention
    python bench/speedrun.py --variants                   # the default preset, and the same in fp32
    python bench/speedrun.py --runs shakespeare_char_gpt2 --target 1.88
    python bench/speedrun.py --nanogpt ~/src/nanoGPT --seeds 1,2,3,1337   # the default on each seed, one nanoGPT run
    python bench/speedrun.py --nanogpt ~/src/nanoGPT --seeds 1,2,3,1337 --paired   # a nanoGPT run before each seed
    python bench/speedrun.py --seeds 1,2,3,1337 --dtypes float32,bfloat16  # each seed in each dtype
    python bench/speedrun.py --nanogpt ~/src/nanoGPT --seeds 1,2,3,1337 --paired --repeat 3  # median of 3 pairs each

Each run is a fresh process, timed from its launch (imports included) to the first evaluation printing
val loss <= target, and to its end; both programs evaluate on their own schedule (nanoGPT's recipe every 250
steps). nanoGPT's recipe is its README's CPU command for config/train_shakespeare_char.py; its data is made
by its own data/shakespeare_char/prepare.py from $GPTKIT_DATA/tinyshakespeare.txt (gptkit's shakespeare_char
data is byte-identical). Without --nanogpt, the figure recorded on these machines (issue 12: 136 s to 1.8857)
is printed and marked as not measured now.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# issue 12: an AVX2-only 2-core machine
NANOGPT_RECORDED = {"reach_s": None, "reach_step": None, "final": 1.8857, "wall_s": 136.0}
NANOGPT_CPU = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
               "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
               "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
EVAL_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
# The ablation: each option alone on top of the GPT-2-architecture recipe, then the default recipe without each.
ADD_ONE = [
    ("Muon (muon_lr 0.02)", ["--optimizer=muon"]),
    ("rotary positions", ["--pos=rope"]),
    ("RMSNorm", ["--norm=rmsnorm"]),
    ("QK-norm", ["--qk_norm=true"]),
    ("ReLU^2 MLP", ["--mlp=relu2"]),
    ("SwiGLU MLP", ["--mlp=swiglu"]),
    ("zero-init projections", ["--zero_init_proj=true"]),
    ("logit soft-cap 15", ["--logit_softcap=15"]),
    ("untied head", ["--tie_weights=false"]),
    ("grouped-query attention (2 kv heads of 4)", ["--n_kv_head=2"]),
]

DEFAULT_VARIANTS = [  # the default recipe run otherwise, printed first (also without --ablation: --variants)
    ("in fp32 (as on a CPU without native bf16)", ["--dtype=float32"]),
]
REMOVE_ONE = [
    ("Muon (AdamW for every weight)", ["--optimizer=adamw"]),
    ("rotary (learned positions)", ["--pos=learned"]),
    ("RMSNorm (LayerNorm)", ["--norm=layernorm"]),
    ("QK-norm", ["--qk_norm=false"]),
    ("ReLU^2 (GELU)", ["--mlp=gelu"]),
]
REMOVE_ONE_EXTRA = [  # an option the default does not have, tried on it
    ("+ grouped-query attention (2 kv heads of 4)", ["--n_kv_head=2"]),
]


def timed(cmd: list[str], cwd: str, target: float, env: dict | None = None) -> dict:
    """Run cmd, reading its evaluation lines as they come: seconds to the first val <= target and that evaluation's
    step, final val, wall."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    reach, reach_step, last, tail = None, None, None, []
    for line in proc.stdout:
        tail = (tail + [line])[-20:]
        for m in EVAL_LINE.finditer(line):
            last = float(m.group(3))
            if reach is None and last <= target:
                reach, reach_step = time.perf_counter() - t0, int(m.group(1))
    if proc.wait():
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{''.join(tail)}")
    return {"reach_s": reach, "reach_step": reach_step, "final": last, "wall_s": time.perf_counter() - t0}


def run_gptkit(preset: str, overrides: list[str], target: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="gptkit-speedrun-") as out:
        cmd = [sys.executable, "-m", "gptkit", "train", preset, f"--out_dir={out}", "--sample_tokens=0", *overrides]
        return timed(cmd, os.getcwd(), target)


def run_nanogpt(checkout: Path, target: float) -> dict:
    data = checkout / "data" / "shakespeare_char"
    if not (data / "train.bin").is_file():
        source = Path(os.environ.get("GPTKIT_DATA", "../shared/data")) / "tinyshakespeare.txt"
        shutil.copyfile(source, data / "input.txt")
        subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="nanogpt-speedrun-") as out:
        return timed([sys.executable, "train.py", *NANOGPT_CPU, f"--out_dir={out}"], str(checkout), target)


def ratio(r: dict, ref: dict) -> float | None:
    """r's time to the target over nanoGPT's, or over nanoGPT's time to its final val (1.8857, about the target) when
    it does not reach the target itself: the time its recipe takes to get where it gets. None if r never reaches it."""
    return r["reach_s"] / (ref["reach_s"] or ref["wall_s"]) if r["reach_s"] else None


def row(name: str, r: dict, ref: dict) -> str:
    """A table row: time to the target (and the step of that evaluation), ratio (`ratio`), final val, wall time."""
    reach = f"{r['reach_s']:7.1f} s (step {r['reach_step']})" if r["reach_s"] is not None else "  not reached"
    x = ratio(r, ref)
    ratio_text = f"{x:5.2f}x" if x is not None else "    -"
    return f"| {name:38s} | {reach} | {ratio_text} | {r['final']:.4f} | {r['wall_s']:6.1f} s |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=["shakespeare_char"], help="gptkit presets to time")
    ap.add_argument("--target", type=float, default=1.88, help="the val loss whose first arrival is timed")
    ap.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout: run its CPU recipe side by side")
    ap.add_argument("--ablation", action="store_true", help="each option added to shakespeare_char_gpt2, and "
                    "each removed from the default recipe")
    ap.add_argument("--seeds", default="", help="comma-separated seeds: each preset of --runs once per seed "
                    "(default: the preset's own seed)")
    ap.add_argument("--dtypes", default="", help="comma-separated dtypes (float32, bfloat16): each preset of --runs "
                    "once per dtype (default: the preset's, auto: bf16 where the CPU has native bf16)")
    ap.add_argument("--paired", action="store_true", help="with --nanogpt: run nanoGPT again before each gptkit run "
                    "of --runs and take that run's ratio against its own nanoGPT run (the shared machine's speed "
                    "drifts by 10-20%% within minutes)")
    ap.add_argument("--repeat", type=int, default=1, help="with --paired: this many pairs per seed, then each seed's "
                    "median ratio (one pair's ratio moves with the machine's speed; a run that never reaches the "
                    "target counts as the worst)")
    ap.add_argument("--variants", action="store_true", help="the default recipe in fp32 too")
    ap.add_argument("--only", default="", help="with --ablation/--variants: only the rows whose name contains this "
                    "text (the presets of --runs and the ablation's base still run)")
    args = ap.parse_args()
    print(f"| run | to val <= {args.target} | vs nanoGPT | final val | wall |\n|---|---|---|---|---|")
    if args.paired and not args.nanogpt:
        ap.error("--paired runs nanoGPT beside each run: give its checkout with --nanogpt")
    if args.repeat < 1 or (args.repeat > 1 and not args.paired):
        ap.error("--repeat N (N >= 1) repeats the pairs of --paired: give --paired --nanogpt PATH too")
    if args.paired:
        ref = NANOGPT_RECORDED  # replaced by each pair's own run below
    elif args.nanogpt:
        ref = run_nanogpt(args.nanogpt.resolve(), args.target)
        print(row("nanoGPT's CPU recipe (measured now)", ref, ref), flush=True)
    else:
        ref = NANOGPT_RECORDED
        print(row("nanoGPT's CPU recipe (recorded, not run)", ref, ref), flush=True)
    seeds = [int(v) for v in args.seeds.split(",") if v] or [None]
    dtypes = [v for v in args.dtypes.split(",") if v] or [None]
    for preset in args.runs:
        for dtype in dtypes:
            for seed in seeds:
                over = [f"--seed={seed}"] * (seed is not None) + [f"--dtype={dtype}"] * (dtype is not None)
                name = " ".join([f"gptkit {preset}", *(o.lstrip("-").replace("=", " ") for o in over)])
                ratios = []
                for _ in range(args.repeat):
                    if args.paired:
                        ref = run_nanogpt(args.nanogpt.resolve(), args.target)
                        print(row("nanoGPT's CPU recipe (its pair, measured now)", ref, ref), flush=True)
                    r = run_gptkit(preset, over, args.target)
                    print(row(name, r, ref), flush=True)
                    x = ratio(r, ref)
                    ratios.append(math.inf if x is None else x)
                if args.repeat > 1:
                    print(f"| {name}: the median of {args.repeat} pairs | | **{statistics.median(ratios):.2f}x** | | |",
                          flush=True)
    if args.variants or args.ablation:
        for name, over in [v for v in DEFAULT_VARIANTS if args.only in v[0]]:
            print(row(f"default {name}", run_gptkit("shakespeare_char", over, args.target), ref), flush=True)
    if args.ablation:
        print(row("gptkit shakespeare_char_gpt2 (the base)", run_gptkit("shakespeare_char_gpt2", [], args.target), ref))
        for name, over in [v for v in ADD_ONE if args.only in v[0]]:
            print(row(f"gpt2 recipe + {name}", run_gptkit("shakespeare_char_gpt2", over, args.target), ref), flush=True)
        for name, over in [v for v in REMOVE_ONE if args.only in v[0]]:
            print(row(f"default - {name}", run_gptkit("shakespeare_char", over, args.target), ref), flush=True)
        for name, over in [v for v in REMOVE_ONE_EXTRA if args.only in v[0]]:
            print(row(f"default {name}", run_gptkit("shakespeare_char", over, args.target), ref), flush=True)


if __name__ == "__main__":
    main()
