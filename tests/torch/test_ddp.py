"""DDP through torchrun with 2 gloo processes on the CPU: one step equals one process on the combined batch."""

import subprocess
import sys

import numpy as np
import pytest

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
