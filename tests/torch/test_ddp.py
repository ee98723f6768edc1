"""DDP through torchrun with 2 gloo processes on the CPU: one step equals one process on the combined batch, and the
backend's own collectives leave nothing in gloo's hands when they return."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd

ARGS = ["--device=cpu", "--data=shakespeare_char", "--loader=sequential", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16",
        "--max_iters=2", "--eval_interval=100", "--eval_iters=1", "--sample_tokens=0", "--progress=false",
        "--dropout=0.0", "--warmup_iters=1"]


def _train(out_dir, extra, nproc=None):
    cmd = [sys.executable, "-m", "gptkit", "train", "nanogpt_cpu", *ARGS, f"--out_dir={out_dir}", *extra]
    if nproc:
        cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "gptkit"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_ranks_equal_one_process_on_the_combined_batch(tmp_path):
    ddp = _train(tmp_path / "ddp", ["--batch_size=4"], nproc=2)
    _train(tmp_path / "one", ["--batch_size=8"])
    assert ddp.stdout.count("run dir:") == 1  # only rank 0 reports
    a, meta_a = ckpt.read_checkpoint(tmp_path / "ddp" / rd.LAST, prefix="model.")
    b, meta_b = ckpt.read_checkpoint(tmp_path / "one" / rd.LAST, prefix="model.")
    assert meta_a["step"] == meta_b["step"] == 2 and len(meta_a["ranks"]) == 2
    for k in b:
        np.testing.assert_allclose(a[k], b[k], atol=2e-6, rtol=1e-5, err_msg=k)
    assert meta_a["ranks"][0]["loader"] != meta_a["ranks"][1]["loader"]  # each rank its own stride


@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_torchrun_processes_than_gpus_is_one_clear_error(monkeypatch, local_rank):
    """torchrun --nproc_per_node=2 on a machine with one GPU (faked: no GPU here): every rank stops with the same
    ValueError before any CUDA call (rank 1 used to die in torch.cuda.set_device with a traceback)."""
    import torch

    from gptkit.torch.runtime import init_distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail(f"set_device({d}) was called"))
    for k, v in {"WORLD_SIZE": "2", "RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=r"torchrun started 2 processes on this machine, which has 1 CUDA GPU\(s\), "
                       r"and each process needs its own; pass --nproc-per-node=1 or fewer, or --device=cpu"):
        init_distributed(torch.device("cuda"))


COLLECTIVES = '''
import torch

import gptkit.torch.backend as tb
from gptkit.config import TrainConfig
from gptkit.torch import runtime

waited = []


def released_then_free(*tensors, **kw):
    runtime.released(*tensors, **kw)
    waited.append(max(t._use_count() for t in tensors))


tb.released = released_then_free
b = tb.TorchBackend()
b.setup(TrainConfig(device="cpu", dtype="float32", threads=1))
for i in range(100):
    got = b.gather({"rank": b.rank, "blob": "x" * (1000 * b.rank + i), "rng": torch.get_rng_state().numpy()})
    if b.rank == 0:
        assert [g["rank"] for g in got] == [0, 1] and [len(g["blob"]) for g in got] == [i, 1000 + i], i
        assert got[1]["rng"].shape == (5056,)
    else:
        assert got is None
    assert b.total(b.rank + 1) == 3 and b.agree(b.rank) == 1 and b.to_floats([torch.tensor(b.rank * 2.0)]) == [1.0]
    b.barrier()
assert runtime._wait_for_release and len(waited) == 600 and set(waited) == {1}, (len(waited), set(waited))
b.close()
'''


def test_each_collective_returns_once_gloo_has_let_go_of_its_tensors(tmp_path):
    """2 gloo ranks: gather (pickled objects of unequal sizes), total, agree, the loss mean and barrier, 100 times
    over, each returning only once gloo's worker thread has dropped its tensors (use count 1: only Python's), and the
    processes exit at once after. A rank that exited while a worker still held tensors aborted in CI ("terminate
    called without an active exception": the worker asks a finalizing interpreter for the GIL, pytorch#179291)."""
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_wait_for_gloo_gives_up_on_a_tensor_held_elsewhere(monkeypatch):
    """A tensor something else keeps (here autograd's saved copy) is waited for `timeout` seconds, once: after that
    the backend stops waiting (a torch that kept its own references must not slow every step by the timeout)."""
    from gptkit.torch import runtime

    monkeypatch.setattr(runtime, "_wait_for_release", True)
    t = torch.ones(1, requires_grad=True)
    y = t * t  # noqa: F841 -- the graph holds t
    assert t._use_count() > 1
    t0 = time.perf_counter()
    runtime.released(t, timeout=0.05)
    assert 0.05 <= time.perf_counter() - t0 < 1.0 and not runtime._wait_for_release
    t0 = time.perf_counter()
    runtime.released(t, timeout=0.05)
    assert time.perf_counter() - t0 < 0.01
