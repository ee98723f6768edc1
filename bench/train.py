"""Training benchmark: nanoGPT's CPU recipe run by gptkit and gptkit's own presets, or (--step) the GPT-2 124M
training step on a GPU against nanoGPT's own train.py, side by side.

    python bench/train.py                    # nanogpt_cpu (fp32, bf16) + the default preset
    python bench/train.py --runs shakespeare_char_long    # any presets, by name
    python bench/train.py --step --nanogpt ~/src/nanoGPT  # GPU: gpt2_124m's step (64 x 1024 x 8, bf16, compile)
    python bench/train.py --step --nanogpt ~/src/nanoGPT --override=--chunked_loss=false   # gptkit's variants

--step: both programs train GPT-2 124M (biases on, as OpenAI's; vocab padded to 50,304) with AdamW, bf16 autocast
and torch.compile, on GPT-2 tokens of tiny Shakespeare written once in the format both read (uint16 train.bin /
val.bin), random windows, --micro-steps x --batch-size x 1,024 tokens per step. Each program syncs with the host
as its recipe does: nanoGPT reads its loss every step (log_interval=1, its time per step), gptkit once per
log_interval (10 in its GPU presets); gptkit's timer waits for the GPU only after the first --warmup steps and
after the last. The first --warmup steps (compilation) are not timed on either side. Printed for both: ms/step,
tokens/s, MFU (gptkit's FLOPs per token, PaLM's 6N + 12LCT, over the GPU's datasheet bf16 peak), and the ratio.

Without --step, for each run: ms per optimizer step (training steps only, evaluation excluded; on the CPU a step is synchronous,
so timing Run.train_step is exact), tokens/s, the final val
loss, the wall time (evaluations included) and the first elapsed second at which val loss <= --target.

The reference is nanoGPT's own figures for the same recipe, from its README command on
config/train_shakespeare_char.py (`--device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0`): about 34 ms/iter and 75 s, val loss 1.886, as quoted in gptkit's
issue 4 from an earlier 2-core machine (run side by side since, the same recipe took 87-129 s: the machines
vary). The ratios printed are against those quoted figures; `bench/speedrun.py --nanogpt PATH` (to a val loss) and
`--step --nanogpt PATH` here (the GPT-2 124M step on a GPU) run nanoGPT's own train.py in the same invocation.

bf16 autocast runs a full recipe only where the CPU multiplies bf16 natively (AVX512-BF16 / AMX);
elsewhere torch emulates bf16 matmul about 100x slower than fp32, so only a few steps are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NANOGPT_MS_PER_ITER, NANOGPT_SECONDS, NANOGPT_VAL = 34.0, 75.0, 1.886
ITER_LINE = re.compile(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms")  # nanoGPT's train.py, one line per step


def run_one(preset: str, overrides: list[str], out_dir: str, sync_after: tuple[int, ...] = ()) -> dict:
    """Train in a fresh process (so runs do not share caches or threads); return the summary: each step's time
    and the time at its end. On a GPU a step is asynchronous: the device is waited for after the steps numbered in
    sync_after (1-based) only, so the times between two of those are exact and nothing else is synchronized."""
    code = (
        "import json, sys, time, torch\n"
        "from gptkit.config import load_run_config\n"
        "from gptkit.training.run import Run\n"
        "from gptkit.torch.backend import TorchBackend\n"
        "cfg = load_run_config(sys.argv[1], sys.argv[2:-1])\n"
        "tr = Run(cfg, TorchBackend())\n"
        "cuda = tr.backend.device.type == 'cuda'\n"
        "sync_after = {int(s) for s in sys.argv[-1].split(',') if s}\n"
        "step_times, stamps = [], []\n"
        "inner = tr.train_step\n"
        "def timed():\n"
        "    t = time.perf_counter(); loss = inner()\n"
        "    if cuda and len(stamps) + 1 in sync_after: torch.cuda.synchronize()\n"
        "    stamps.append(time.perf_counter()); step_times.append(stamps[-1] - t); return loss\n"
        "tr.train_step = timed\n"
        "t = time.perf_counter(); r = tr.run(); wall = time.perf_counter() - t\n"
        "print(json.dumps({'wall_s': wall, 'step_s': step_times, 'stamps': stamps, 'evals': r.evals,\n"
        "                  'tokens_per_step': tr.tokens_per_step, 'dtype': str(tr.backend.dtype),\n"
        "                  'flops_per_token': tr.backend.flops_per_token(cfg.model.block_size),\n"
        "                  'peak_flops': tr.backend.peak_flops(0.0)}))\n"
    )
    args = [sys.executable, "-c", code, preset, f"--out_dir={out_dir}", "--progress=false", "--sample_tokens=0", *overrides,
            ",".join(map(str, sync_after))]
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


def step_data(out: Path) -> Path:
    """GPT-2 tokens of tiny Shakespeare in gptkit's data dir, whose train.bin / val.bin are nanoGPT's format too."""
    source = Path(os.environ.get("GPTKIT_DATA", "../shared/data")) / "tinyshakespeare.txt"
    subprocess.run([sys.executable, "-m", "gptkit", "prepare", str(source), "-t", "gpt2", "-o", str(out)], check=True,
                   capture_output=True)
    return out


def step_gptkit(args, data: Path, out: str) -> dict:
    over = [f"--data={data}", "--loader=random", f"--device={args.device}", f"--n_layer={args.n_layer}",
            f"--block_size={args.block_size}", f"--batch_size={args.batch_size}", f"--max_iters={args.steps}",
            f"--total_batch_tokens={args.batch_size * args.block_size * args.micro_steps}", "--warmup_iters=10",
            f"--eval_interval={args.steps}", "--eval_iters=1", "--sample_tokens=0", *args.override]
    r = run_one("gpt2_124m", over, out, sync_after=(args.warmup, args.steps))
    step_s = (r["stamps"][args.steps - 1] - r["stamps"][args.warmup - 1]) / (args.steps - args.warmup)
    return {"step_s": step_s, "tokens": r["tokens_per_step"],
            "flops_per_token": r["flops_per_token"], "peak": r["peak_flops"]}


def step_nanogpt(args, data: Path, checkout: Path, out: str) -> dict:
    """nanoGPT's train.py with the same model, batch and precision; its own per-iteration times."""
    dataset = checkout / "data" / "gptkit_bench"
    dataset.mkdir(exist_ok=True)
    for split in ("train.bin", "val.bin"):
        shutil.copyfile(data / split, dataset / split)
    cuda = args.device.startswith("cuda")
    cmd = [sys.executable, "train.py", "--dataset=gptkit_bench", f"--batch_size={args.batch_size}",
           f"--gradient_accumulation_steps={args.micro_steps}", f"--block_size={args.block_size}",
           f"--n_layer={args.n_layer}", "--bias=True", "--dropout=0.0", f"--max_iters={args.steps}",
           "--eval_interval=1000000", "--eval_iters=1", "--log_interval=1", "--warmup_iters=10", f"--device={args.device}",
           f"--compile={cuda}", f"--dtype={'bfloat16' if cuda else 'float32'}", f"--out_dir={out}",
           "--always_save_checkpoint=False"]
    done = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"nanoGPT failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    times = [float(m.group(2)) / 1000 for m in ITER_LINE.finditer(done.stdout) if int(m.group(1)) >= args.warmup]
    return {"step_s": sum(times) / len(times), "tokens": args.batch_size * args.block_size * args.micro_steps}


def step_report(name: str, r: dict, flops_per_token: float, peak: float | None, ref: dict | None) -> None:
    tok_s = r["tokens"] / r["step_s"]
    mfu = f"MFU {100 * tok_s * flops_per_token / peak:4.1f}%" if peak else "MFU ?"
    ratio = f" ({tok_s * ref['step_s'] / ref['tokens']:4.2f}x nanoGPT)" if ref else ""
    print(f"{name:10s} {1000 * r['step_s']:9.1f} ms/step {tok_s:12,.0f} tok/s{ratio}  {mfu}", flush=True)


def step_main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="gptkit-bench-") as tmp:
        data = step_data(Path(tmp) / "data")
        print(f"GPT-2 step: {args.n_layer} layers, {args.micro_steps} x {args.batch_size} x {args.block_size} tokens, "
              f"{args.steps} steps ({args.warmup} dropped), device {args.device}, gptkit {' '.join(args.override)}")
        ref = step_nanogpt(args, data, args.nanogpt.resolve(), f"{tmp}/nanogpt") if args.nanogpt else None
        mine = step_gptkit(args, data, f"{tmp}/gptkit")
        if ref:
            step_report("nanoGPT", ref, mine["flops_per_token"], mine["peak"], None)
        step_report("gptkit", mine, mine["flops_per_token"], mine["peak"], ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=["nanogpt_cpu", "shakespeare_char"], help="presets to run")
    ap.add_argument("--target", type=float, default=1.88, help="val loss whose first arrival is timed")
    ap.add_argument("--bf16-steps", type=int, default=20, help="steps timed in bf16 on CPUs without native bf16")
    step = ap.add_argument_group("--step: the GPT-2 124M training step against nanoGPT")
    step.add_argument("--step", action="store_true", help="time gpt2_124m's step instead of the CPU runs")
    step.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to run side by side")
    step.add_argument("--device", default="cuda")
    step.add_argument("--steps", type=int, default=30, help="optimizer steps per program")
    step.add_argument("--warmup", type=int, default=10, help="first steps not timed (compilation)")
    step.add_argument("--micro-steps", type=int, default=8)
    step.add_argument("--batch-size", type=int, default=64)
    step.add_argument("--block-size", type=int, default=1024)
    step.add_argument("--n-layer", type=int, default=12, help="fewer for a quick check of the script on a CPU")
    step.add_argument("--override", action="append", default=[], help="a gptkit train flag, e.g. --override=--compile=false")
    args = ap.parse_args()
    if args.step:
        return step_main(args)
    from gptkit.torch.runtime import cpu_has_fast_bf16

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
