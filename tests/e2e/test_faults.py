"""Fault injection (issue 16): a training killed with SIGKILL again and again, at seeded moments chosen inside its
checkpoint writes, its metrics writes, between steps and at random delays, and continued each time the way its
messages say (`--resume`, or start again with `--overwrite` when no checkpoint landed yet), ends with the weights,
best checkpoint and metrics.jsonl of a run never interrupted, and no temp file left. SIGTERM and SIGINT checkpoint
the step they arrive at and exit 143 / 130.

The kills come from inside the child (CHILD below wraps the writers it names), so "inside the write" is hit on
purpose, not by luck, and the schedule is a seeded list: a failure reproduces. The model is tiny and the run short
(one thread, CPU), so each child costs about its interpreter's start-up.
"""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from gptkit.cli import main
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--progress=false", "--sample_tokens=0", "--eval_iters=1",
        "--device=cpu", "--threads=1"]
FAULTED = [*TINY, "--max_iters=60", "--eval_interval=3", "--log_interval=1"]

# The child: `python child.py ARGV...` runs `gptkit ARGV...` with a fault armed by $GPTKIT_TEST_FAULT,
# "WHERE:N:X": the N-th checkpoint-module write (checkpoints, the tokenizer copy) or metrics.jsonl append is cut
# after the fraction X of its bytes, or the N-th training step is never taken, or (time) the loop is killed X
# seconds after it starts; each by SIGKILL, which no handler sees.
CHILD = '''
import os, signal, sys, threading
from gptkit.training import checkpoint, run_dir
from gptkit.training import run as runs
from gptkit.cli import main
from gptkit.files import atomic_writer

where, nth, frac = os.environ["GPTKIT_TEST_FAULT"].split(":")
nth, frac, calls = int(nth), float(frac), [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def due():
    calls[0] += 1
    return calls[0] == nth

real_write, real_append, real_step, real_run = (checkpoint.atomic_write_bytes, runs.append_metrics,
                                                runs.Run.train_step, runs.Run.run)

def write(path, data):
    if due():
        with atomic_writer(path) as f:  # a temp file, part-written, never renamed
            f.write(data[:int(len(data) * frac)])
            f.flush()
            die()
    real_write(path, data)

def append(path, record):
    if due():
        line = (__import__("json").dumps(record) + "\\n").encode()
        with open(path, "ab") as f:  # a line cut short
            f.write(line[:int(len(line) * frac)])
        die()
    real_append(path, record)

def step(self):
    if due():
        die()
    return real_step(self)

def run(self):
    timer = threading.Timer(frac, die)
    timer.daemon = True
    timer.start()
    return real_run(self)

if where == "checkpoint":
    checkpoint.atomic_write_bytes = run_dir.atomic_write_bytes = write  # checkpoints; the tokenizer copy
elif where == "metrics":
    runs.append_metrics = append
elif where == "step":
    runs.Run.train_step = step
elif where == "time":
    runs.Run.run = run
sys.exit(main(sys.argv[1:]))
'''


def _schedule(seed: int) -> list[tuple[str, int, float]]:
    """The faults, in order: each kind at least once, the cut inside each write anywhere from its first byte to its
    last, a few steps in; then two kills at random delays into the loop."""
    rng = random.Random(seed)
    faults = [("checkpoint", rng.randint(1, 4), rng.random()), ("metrics", rng.randint(1, 3), rng.random()),
              ("step", rng.randint(1, 8), 0.0), ("checkpoint", rng.randint(2, 5), rng.random()),
              ("metrics", 1, 0.0), ("checkpoint", rng.randint(1, 3), 0.999)]
    rng.shuffle(faults)
    return faults + [("time", 0, rng.uniform(0.0, 0.4)) for _ in range(2)]


def _next_command(run) -> list[str]:
    """What the run dir's state tells a user to do: resume from its checkpoint, else start it again."""
    if (run / rd.LAST).is_file():
        return ["train", "--resume", str(run)]
    return ["train", *FAULTED, f"--out_dir={run}", "--overwrite"]


def _records(run) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_kill_9_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    assert main(["train", *FAULTED, f"--out_dir={ref}"]) == 0
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    run = tmp_path / "run"
    for where, nth, frac in _schedule(seed=16):
        monkeypatch.setenv("GPTKIT_TEST_FAULT", f"{where}:{nth}:{frac}")
        proc = subprocess.run([sys.executable, str(child), *_next_command(run)], capture_output=True, text=True,
                              timeout=120)
        killed = proc.returncode == -signal.SIGKILL
        assert killed or (where == "time" and proc.returncode == 0), (where, nth, frac, proc.stderr)
    monkeypatch.delenv("GPTKIT_TEST_FAULT")
    assert main(_next_command(run)) == 0
    assert _records(run) == _records(ref)  # the loss sequence: every evaluation's losses, lr, tokens
    for name in (rd.LAST, rd.BEST):
        (got, got_meta), (want, want_meta) = ckpt.read_checkpoint(run / name), ckpt.read_checkpoint(ref / name)
        assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want), name
        assert (got_meta["step"], got_meta["best_val"]) == (want_meta["step"], want_meta["best_val"])
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("back", [1, 0])
def test_a_kill_between_the_last_evaluations_two_checkpoints_leaves_both_right(tmp_path, monkeypatch, back):
    """The final evaluation writes best and last: killed inside the second (back=0) or the first (back=1) of them,
    the resumed run's best.safetensors is still the best step's (it was left at an older step when last came
    first and the kill hit best)."""
    ref, run, short = tmp_path / "ref", tmp_path / "run", [*TINY, "--max_iters=6", "--eval_interval=3"]
    writes = []
    real = ckpt.atomic_write_bytes
    spy = lambda path, data: (writes.append(path), real(path, data))  # noqa: E731
    monkeypatch.setattr(ckpt, "atomic_write_bytes", spy)
    monkeypatch.setattr(rd, "atomic_write_bytes", spy)  # the tokenizer copy: the child counts it too
    assert main(["train", *short, f"--out_dir={ref}"]) == 0
    monkeypatch.undo()
    assert ckpt.read_checkpoint(ref / rd.BEST)[1]["step"] == 6  # val improved at the final step
    assert {p.name for p in writes[-2:]} == {rd.LAST, rd.BEST}
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    monkeypatch.setenv("GPTKIT_TEST_FAULT", f"checkpoint:{len(writes) - back}:0.5")
    proc = subprocess.run([sys.executable, str(child), "train", *short, f"--out_dir={run}"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    monkeypatch.delenv("GPTKIT_TEST_FAULT")
    assert main(["train", "--resume", str(run)]) == 0
    for name in (rd.LAST, rd.BEST):
        got, want = ckpt.read_checkpoint(run / name, "model."), ckpt.read_checkpoint(ref / name, "model.")
        assert got[1]["step"] == want[1]["step"] and all((got[0][k] == want[0][k]).all() for k in want[0]), name
    assert _records(run) == _records(ref)


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_current_step_and_exits_with_its_code(tmp_path, sig, rc, start_training):
    run = tmp_path / "run"
    proc = start_training(run, TINY)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err
    step = ckpt.read_checkpoint(run / rd.LAST)[1]["step"]
    # no evaluation is due before step 1,000,000: this checkpoint is the step the signal arrived at
    assert step > 0 and [r["step"] for r in _records(run)] == [0]
    assert f"interrupted; continue with `gptkit train --resume {run}`" in out
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert main(["train", "--resume", str(run), f"--max_iters={step + 2}"]) == 0
    assert [r["step"] for r in _records(run)] == [0, step + 2]


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_an_overwrite_cut_short_never_leaves_a_checkpoint_without_its_metrics(tmp_path, monkeypatch, cut):
    """--overwrite removes the old run's files one by one; stopped after `cut` of them, the dir is still either a run
    to resume (checkpoint and metrics) or one to start again (no checkpoint)."""
    from pathlib import Path

    run = tmp_path / "run"
    assert main(["train", *TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={run}"]) == 0
    real, removed = Path.unlink, []

    def unlink(self, missing_ok=False):
        if self.parent == run and len(removed) == cut:
            raise KeyboardInterrupt  # the process dies here
        removed.append(self.name)
        real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert main(["train", *TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={run}", "--overwrite"]) == 130
    monkeypatch.undo()
    assert (run / "metrics.jsonl").is_file() or not (run / rd.LAST).is_file(), removed


def test_sigterm_to_torchrun_checkpoints_every_rank(tmp_path):
    """What SLURM and Kubernetes do to a DDP job: SIGTERM to torchrun, which passes it to its workers; they finish
    the step, agree to stop, and rank 0 writes one checkpoint holding both ranks' state."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "gptkit", "train",
           *TINY, "--loader=sequential", "--max_iters=1000000", "--eval_interval=1000000", f"--out_dir={run}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (run / "metrics.jsonl").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    time.sleep(2.0)  # some steps
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    meta = ckpt.read_checkpoint(run / rd.LAST)[1]
    assert meta["step"] > 0 and len(meta["ranks"]) == 2, err[-3000:]
    assert meta["ranks"][0]["loader"] != meta["ranks"][1]["loader"]  # each rank sent its own position
    assert [r["step"] for r in _records(run)] == [0]
    assert out.count("interrupted; continue with") == 1  # rank 0 reports
