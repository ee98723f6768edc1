"""DDP through torchrun with 2 gloo processes on the CPU: one step equals one process on the combined batch."""

import subprocess
import sys

import numpy as np

from gptkit import checkpoint as ckpt

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
    a, meta_a = ckpt.read_checkpoint(tmp_path / "ddp" / ckpt.LAST, prefix="model.")
    b, meta_b = ckpt.read_checkpoint(tmp_path / "one" / ckpt.LAST, prefix="model.")
    assert meta_a["step"] == meta_b["step"] == 2 and len(meta_a["ranks"]) == 2
    for k in b:
        np.testing.assert_allclose(a[k], b[k], atol=2e-6, rtol=1e-5, err_msg=k)
    assert meta_a["ranks"][0]["loader"] != meta_a["ranks"][1]["loader"]  # each rank its own stride
