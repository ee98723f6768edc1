"""Training benchmark on the CPU: nanoGPT's CPU recipe run by gptkit, and gptkit's own presets.

    python bench/train.py                    # nanogpt_cpu (fp32, bf16) + the default preset
    python bench/train.py --runs shakespeare_char_long    # any presets, by name

For each run: ms per optimizer step (training steps only, evaluation excluded; on the CPU a step is synchronous,
so timing Run.train_step is exact), tokens/s, the final val
loss, the wall time (evaluations included) and the first elapsed second at which val loss <= --target.

The reference is nanoGPT's own figures for the same recipe, from its README command on
config/train_shakespeare_char.py (`--device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0`): about 34 ms/iter and 75 s on a quiet 2-core machine like these,
val loss 1.886 (figures measured on these machines and quoted in gptkit's issue 4; nanoGPT's code is not
vendored here, so it is not re-run side by side). The ratios printed are against those figures.

bf16 autocast runs a full recipe only where the CPU multiplies bf16 natively (AVX512-BF16 / AMX);
elsewhere torch emulates bf16 matmul about 100x slower than fp32, so only a few steps are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

NANOGPT_MS_PER_ITER, NANOGPT_SECONDS, NANOGPT_VAL = 34.0, 75.0, 1.886


def run_one(preset: str, overrides: list[str], out_dir: str) -> dict:
    """Train in a fresh process (so runs do not share caches or threads); return the summary."""
    code = (
        "import json, sys, time\n"
        "from gptkit.config import load_run_config\n"
        "from gptkit.runs import Run\n"
        "from gptkit.train import TorchBackend\n"
        "cfg = load_run_config(sys.argv[1], sys.argv[2:])\n"
        "tr = Run(cfg, TorchBackend())\n"
        "step_times = []\n"
        "inner = tr.train_step\n"
        "def timed():\n"
        "    t = time.perf_counter(); loss = inner(); step_times.append(time.perf_counter() - t); return loss\n"
        "tr.train_step = timed\n"
        "t = time.perf_counter(); r = tr.run(); wall = time.perf_counter() - t\n"
        "print(json.dumps({'wall_s': wall, 'step_s': step_times, 'evals': r.evals,\n"
        "                  'tokens_per_step': tr.tokens_per_step, 'dtype': str(tr.backend.dtype)}))\n"
    )
    args = [sys.executable, "-c", code, preset, f"--out_dir={out_dir}", "--progress=false", "--sample_tokens=0", *overrides]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, r: dict, target: float) -> None:
    steps = r["step_s"][5:] or r["step_s"]  # the first steps warm up allocators
    ms = 1000 * sum(steps) / len(steps)
    last = r["evals"][-1]
    reach = next((e["elapsed_s"] for e in r["evals"] if e["val_loss"] <= target), None)
    reach_txt = f"{reach:6.1f} s" if reach is not None else "   not reached"
    print(f"{name:34s} {r['dtype']:15s} {ms:7.1f} ms/step ({NANOGPT_MS_PER_ITER / ms:4.2f}x nanoGPT) "
          f"{r['tokens_per_step'] * 1000 / ms:8,.0f} tok/s  val {last['val_loss']:.4f} @ step {last['step']:5d}  "
          f"wall {r['wall_s']:6.1f} s ({r['wall_s'] / NANOGPT_SECONDS:4.2f}x)  val<={target}: {reach_txt}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=["nanogpt_cpu", "shakespeare_char"], help="presets to run")
    ap.add_argument("--target", type=float, default=1.88, help="val loss whose first arrival is timed")
    ap.add_argument("--bf16-steps", type=int, default=20, help="steps timed in bf16 on CPUs without native bf16")
    args = ap.parse_args()
    from gptkit.runtime import cpu_has_fast_bf16

    fast_bf16 = cpu_has_fast_bf16()
    print(f"torch threads: {os.cpu_count()} cores; native bf16 matmul: {fast_bf16}")
    print(f"reference (nanoGPT, quoted): {NANOGPT_MS_PER_ITER} ms/iter, {NANOGPT_SECONDS:.0f} s, val {NANOGPT_VAL}")
    with tempfile.TemporaryDirectory(prefix="gptkit-bench-") as tmp:
        for preset in args.runs:
            report(f"{preset} fp32", run_one(preset, ["--dtype=float32"], f"{tmp}/{preset}-fp32"), args.target)
            if preset == "nanogpt_cpu":
                extra = [] if fast_bf16 else [f"--max_iters={args.bf16_steps}", f"--eval_interval={args.bf16_steps}",
                                              "--eval_iters=1"]
                label = "nanogpt_cpu bf16" + ("" if fast_bf16 else f" ({args.bf16_steps} steps)")
                report(label, run_one(preset, ["--dtype=bfloat16", *extra], f"{tmp}/{preset}-bf16"), args.target)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
