"""FSDP2 (`--parallel=fsdp`) with 2 gloo processes on the CPU, in fp32: the issue's bars. 2 FSDP ranks train as one
process does on the combined batch (AdamW, AdamW + Muon, with accumulation, clipping, activation checkpointing and
compile), two torchrun "nodes" on one machine do too, checkpoints move between fsdp, one process and ddp, each rank
holds about half the state, and the dry-run's figures are the measured ones."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gptkit
from gptkit.cli import main
from gptkit.config import load_run_config
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd

WORKER = str(Path(__file__).with_name("train_worker.py"))
# 20 steps of 2 micro-steps (256 tokens a step), clipped at 0.5 (the tiny model's gradient norm starts near 4);
# sequential batches, so that 2 ranks of 4 rows see the rows one process of 8 sees.
ARGS = ["device=cpu", "dtype=float32", "data=shakespeare_char", "loader=sequential", "n_layer=2", "n_head=2",
        "n_embd=32", "block_size=16", "max_iters=20", "lr_decay_iters=20", "eval_interval=100", "eval_iters=1",
        "sample_tokens=0", "progress=false", "dropout=0.0", "warmup_iters=2", "grad_clip=0.5", "total_batch_tokens=256",
        "threads=1"]
TOL = 1e-5
# Muon's Newton-Schulz runs in the Gram form on these 1:3 and 1:4 fp32 matrices (gptkit.torch.optim), which carries a
# matmul's rounding further on an ill-conditioned update: one process orthogonalises both layers' matrices in one
# batched product, each fsdp owner its one, and the weights part by 2.2e-5 after 20 steps (4.8e-7 with the plain loop)
MUON_TOL = 1e-4


def _launch(out: Path, args: list[str], nproc: int = 0, launcher=(), env=None) -> subprocess.Popen:
    cmd = [sys.executable, WORKER, str(out), *args]
    if nproc:
        cmd[1:1] = ["-m", "torch.distributed.run", *(launcher or ["--standalone", f"--nproc-per-node={nproc}"])]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _result(proc: subprocess.Popen, out: Path) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return {**json.loads(out.read_text()), "stderr": stderr}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(name, *fields, nproc=0, env=None): the worker's result for a run into <tmp>/<name>, run once per module."""
    root, done = tmp_path_factory.mktemp("fsdp"), {}

    def train(name: str, *fields: str, nproc: int = 0, env=None) -> dict:
        if name not in done:
            out = root / f"{name}.json"
            done[name] = _result(_launch(out, [*ARGS, f"out_dir={root / name}", *fields], nproc, env=env), out)
            done[name]["dir"] = root / name
        return done[name]

    train.root = root
    return train


def one(runs, optimizer: str) -> dict:
    return runs(f"one_{optimizer}", f"optimizer={optimizer}", "batch_size=8")


def fsdp(runs, optimizer: str) -> dict:
    """AdamW runs compiled (dynamo's capture, eager), AdamW + Muon with activation checkpointing."""
    if optimizer == "adamw":
        return runs("fsdp_adamw", "batch_size=4", "parallel=fsdp", "compile=true", nproc=2,
                    env={"GPTKIT_TEST_EAGER": "1"})
    return runs(f"fsdp_{optimizer}", f"optimizer={optimizer}", "batch_size=4", "parallel=fsdp",
                "activation_checkpointing=true", nproc=2)


def assert_same_run(a: dict, b: dict, tol: float = TOL) -> None:
    """The same 20 losses to tol, and the same weights (and live weights, under ema_decay) and optimizer state in the
    last checkpoint."""
    assert len(a["losses"]) == len(b["losses"]) == 20
    np.testing.assert_allclose(a["losses"], b["losses"], atol=tol, rtol=0)
    ta, ma = ckpt.read_checkpoint(a["dir"] / rd.LAST)
    tb, mb = ckpt.read_checkpoint(b["dir"] / rd.LAST)
    states = [k for k in ta if k.startswith(("model.", "live.", "optim."))]
    assert states == [k for k in tb if k.startswith(("model.", "live.", "optim."))]
    for k in states:
        np.testing.assert_allclose(ta[k], tb[k], atol=tol, rtol=0, err_msg=k)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_fsdp_ranks_equal_one_process(runs, optimizer):
    a, b = fsdp(runs, optimizer), one(runs, optimizer)
    assert_same_run(a, b, TOL if optimizer == "adamw" else MUON_TOL)
    _, meta = ckpt.read_checkpoint(a["dir"] / rd.LAST)
    assert meta["parallel"] == "fsdp" and len(meta["ranks"]) == 2 and meta["step"] == 20
    assert a["losses"][-1] < a["losses"][0] - 0.3  # it learned (the tiny model starts at ln 65 = 4.17)


def test_fsdp_in_bf16_trains_as_one_process_does(runs):
    """bf16 autocast: the blocks' matrices gathered in bf16 (the rounding autocast does), norms, embeddings, head and
    residual stream in fp32, gradients reduced in fp32: within 2e-3 of one process over 20 steps (DDP's own
    distance on the same runs: 6e-4; the gap is bf16's summation order)."""
    a = runs("fsdp_bf16", "dtype=bfloat16", "optimizer=muon", "batch_size=4", "parallel=fsdp", nproc=2)
    b = runs("one_bf16", "dtype=bfloat16", "optimizer=muon", "batch_size=8")
    np.testing.assert_allclose(a["losses"], b["losses"], atol=2e-3, rtol=0)
    assert a["losses"][-1] < a["losses"][0] - 0.3


def test_fsdp_with_the_default_presets_model_trains_as_one_process_does(runs):
    """Rotary, RMSNorm, QK-norm and ReLU^2 with Muon (and its weight decay), and a weight average: each QK-norm is
    its own FSDP module there, whose weight is whole only while its forward runs, so the attention calls them as
    modules (one process takes both in one pass); each rank averages its shards."""
    # ShardedMuon decays each rank's rows as Muon does the whole weight; each rank averages its own shards
    modern = ("pos=rope", "norm=rmsnorm", "qk_norm=true", "mlp=relu2", "bias=false", "optimizer=muon",
              "muon_weight_decay=0.5", "ema_decay=0.9")
    a = runs("fsdp_modern", *modern, "batch_size=4", "parallel=fsdp", nproc=2)
    assert any(k.startswith("live.") for k in ckpt.read_checkpoint(a["dir"] / rd.LAST)[0])
    assert_same_run(a, runs("one_modern", *modern, "batch_size=8"), MUON_TOL)


def test_two_nodes_on_one_machine_equal_one_process(runs):
    """Two torchrun commands of one process each, --nnodes=2 with c10d rendezvous on 127.0.0.1: one job of 2 ranks."""
    root = runs.root
    out, port = root / "nodes.json", 29400 + os.getpid() % 500
    args = [*ARGS, f"out_dir={root / 'nodes'}", "optimizer=muon", "batch_size=4", "parallel=fsdp",
            "activation_checkpointing=true"]
    nodes = [_launch(out, args, nproc=1, launcher=["--nnodes=2", "--nproc-per-node=1", f"--node-rank={k}",
                                                   "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                                                   "--rdzv-id=gptkit-test"]) for k in (0, 1)]
    results = [n.communicate(timeout=300) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), [err[-2000:] for _, err in results]
    assert_same_run({**json.loads(out.read_text()), "dir": root / "nodes"}, one(runs, "muon"), MUON_TOL)


def test_resume_across_layouts(runs):
    """fsdp 2 -> fsdp 2 continues bit for bit; fsdp 2 -> one process -> ddp 2 continues the same run to rounding,
    saying so at each switch."""
    whole = fsdp(runs, "muon")
    first = runs("half", "optimizer=muon", "batch_size=4", "parallel=fsdp", "activation_checkpointing=true",
                 "max_iters=10", nproc=2)
    shutil.copytree(first["dir"], runs.root / "switch")
    again = _result(_launch(runs.root / "again.json", ["--resume", str(first["dir"]), "--max_iters=20"], 2),
                    runs.root / "again.json")
    assert first["losses"] + again["losses"] == whole["losses"]  # the same floats
    assert "resuming" not in again["stderr"]
    one_proc = _result(_launch(runs.root / "b1.json", ["--resume", str(runs.root / "switch"), "--max_iters=15"]),
                       runs.root / "b1.json")
    assert "resuming step 10 of 2 fsdp processes as one process: the same weights, optimizer state and data " \
           "position; the losses may differ from an uninterrupted run's by rounding" in one_proc["stderr"]
    ddp = _result(_launch(runs.root / "b2.json", ["--resume", str(runs.root / "switch"), "--max_iters=20",
                                                  "--parallel=ddp"], 2), runs.root / "b2.json")
    assert "resuming step 15 of one process as 2 ddp processes" in ddp["stderr"]
    switched = {"losses": first["losses"] + one_proc["losses"] + ddp["losses"], "dir": runs.root / "switch"}
    assert_same_run(switched, whole, MUON_TOL)
    assert switched["losses"][10] != pytest.approx(switched["losses"][9], abs=1e-3)  # each step its own batch
    _, meta = ckpt.read_checkpoint(runs.root / "switch" / rd.LAST)
    assert meta["parallel"] == "ddp" and meta["step"] == 20


def test_fsdp_checkpoint_is_what_every_command_reads(runs, capsys):
    """The gathered checkpoint is an ordinary one: gptkit sample reads it, and greedy text equals one process's."""
    texts = []
    for run in (fsdp(runs, "adamw"), one(runs, "adamw")):
        assert main(["sample", str(run["dir"]), "--temperature", "0", "--max-new-tokens", "40", "--prompt", "ROMEO:"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("ROMEO:")


def test_each_fsdp_rank_holds_half_the_state_and_the_dry_run_says_so(runs):
    """Weights + gradients + optimizer state held just before an optimizer step: rank 0 of 2 fsdp ranks holds about
    half of one process's (rows split unevenly: 65 vocab rows are 33 + 32), exactly what per_rank_bytes predicts."""
    from gptkit.torch.memory import per_rank_bytes

    shard, whole = fsdp(runs, "adamw")["bytes"], one(runs, "adamw")["bytes"]
    ratio = sum(shard.values()) / sum(whole.values())
    assert 0.45 < ratio < 0.56, (shard, whole)
    cfg = load_run_config("nanogpt_cpu", [f"--{a}" for a in [*ARGS, "batch_size=4", "parallel=fsdp", "vocab_size=65"]])
    for world, held in ((2, shard), (1, whole)):
        want = per_rank_bytes(cfg, world, "fsdp", 1, torch.float32)
        assert held["weights"] == want["weights"] and held["gradients"] == want["gradients"]
        params = len(list(ckpt.read_checkpoint(runs.root / "one_adamw" / rd.LAST, prefix="model.")[0]))
        assert 0 <= held["optimizer"] - want["optimizer"] <= 4 * params  # + AdamW's step counters


def test_a_world_size_that_does_not_divide_the_step_is_one_line_on_every_rank(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "gptkit", "train",
           "nanogpt_cpu", *[f"--{a}" for a in ARGS], f"--out_dir={tmp_path / 'r'}", "--batch_size=4",
           "--total_batch_tokens=192", "--parallel=fsdp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and not (tmp_path / "r").exists()
    assert done.stderr.count("gptkit: error: total_batch_tokens=192 is not a multiple of batch_size x block_size x "
                             "ranks = 4 x 16 x 2 = 128; pick a multiple, e.g. 256") == 2
    package = str(Path(gptkit.__file__).parent) + os.sep  # torchrun prints its own traceback of the failed job;
    frames = [ln for ln in done.stderr.splitlines() if ln.lstrip().startswith("File ")]  # none comes from gptkit
    assert not [ln for ln in frames if package in ln]


def test_fsdp_with_mlx_is_one_line(capsys):
    assert main(["train", "--backend=mlx", "--parallel=fsdp", "--max_iters=1"]) == 1
    assert capsys.readouterr().err == ("gptkit: error: parallel='fsdp' is the torch backend's (PyTorch FSDP2 over "
                                       "torchrun); the MLX backend trains on one device: use --backend=torch, or leave "
                                       "it out\n")


def test_fsdp_in_fp16_is_one_line_before_any_work(monkeypatch):
    """fp16 needs a GradScaler, which FSDP2 does not shard here: refused at setup (the fp16 path is CUDA's; faked)."""
    from gptkit.config import TrainConfig
    from gptkit.torch import backend as tb
    from gptkit.torch.runtime import Dist

    monkeypatch.setattr(tb, "pick_dtype", lambda name, device: torch.float16)
    monkeypatch.setattr(tb, "init_distributed", lambda device: (Dist(0, 0, 2), device))
    with pytest.raises(ValueError, match=r"^parallel='fsdp' trains in bfloat16 or float32 \(fp16's GradScaler is not "
                       r"sharded here\); use --dtype=bfloat16$"):
        tb.TorchBackend().setup(TrainConfig(parallel="fsdp", device="cpu"))
