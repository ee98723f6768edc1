"""train.ema_decay: an exponential moving average of the weights, evaluated, sampled and checkpointed as `model.`
(the training weights as `live.`, for --resume): the average by hand, what evaluation sees, exact resume, the MLX
backend equal to torch, and bad values."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from tests.torch.test_backend import tiny_run, trainer

from gptkit.cli import main
from gptkit.config import TrainConfig
from gptkit.torch.backend import train
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd
from gptkit.training.setup import ema_at


def test_ema_at_docstring_example():
    assert ema_at(1, 0.995) == pytest.approx(2 / 11)  # 0.18
    assert ema_at(100, 0.995) == pytest.approx(101 / 110)  # 0.92
    assert ema_at(1789, 0.995) < 0.995 and ema_at(1790, 0.995) == ema_at(10_000, 0.995) == 0.995


def test_the_checkpoint_holds_the_average_by_hand_and_evaluation_sees_it(tmp_path):
    """avg_0 = w_0; avg_n = d_n avg_(n-1) + (1 - d_n) w_n with d_n = ema_at(n) (TensorFlow's
    ExponentialMovingAverage with num_updates): model. in the checkpoint is avg_12, live. is w_12, and the val loss
    in metrics.jsonl is the loss of the average, not of the live weights."""
    run = trainer(tiny_run(tmp_path, optimizer="muon", ema_decay=0.9, max_iters=12, eval_interval=100))
    names = list(run.backend.weights())
    avg = {k: v.copy() for k, v in run.backend.weights().items()}
    for n in range(1, 13):
        run.train_step()
        d = ema_at(n, 0.9)
        avg = {k: d * avg[k] + (1 - d) * v for k, v in run.backend.weights().items()}
    run.run()  # evaluates and saves at step 12 (no steps left to take)
    tensors, _ = ckpt.read_checkpoint(tmp_path / "run" / rd.LAST)
    live = run.backend.weights()
    for k in names:
        np.testing.assert_allclose(tensors[f"model.{k}"], avg[k], atol=1e-6, rtol=0, err_msg=k)
        np.testing.assert_array_equal(tensors[f"live.{k}"], live[k])
    assert max(np.abs(avg[k] - live[k]).max() for k in names) > 1e-3  # the two differ, or this test shows nothing
    val = json.loads((tmp_path / "run" / rd.METRICS).read_text().splitlines()[-1])["val_loss"]
    assert run.evaluate()["val"] != pytest.approx(val, abs=1e-5)  # the live weights: another loss
    with run.averaged():
        assert run.evaluate()["val"] == pytest.approx(val, abs=1e-6)


def test_a_resumed_run_with_an_average_continues_bit_exact(tmp_path):
    whole = train(tiny_run(tmp_path, "whole", optimizer="muon", ema_decay=0.9, lr_decay_iters=12))
    train(tiny_run(tmp_path, "split", optimizer="muon", ema_decay=0.9, max_iters=6, lr_decay_iters=12))
    assert main(["train", "--resume", str(tmp_path / "split"), "--max_iters=12", "--progress=false"]) == 0
    a, _ = ckpt.read_checkpoint(tmp_path / "whole" / rd.LAST)
    b, _ = ckpt.read_checkpoint(tmp_path / "split" / rd.LAST)
    assert sorted(a) == sorted(b) and any(k.startswith("live.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    records = [json.loads(x) for x in (tmp_path / "split" / rd.METRICS).read_text().splitlines()]
    assert [r["val_loss"] for r in records] == [e["val_loss"] for e in whole.evals]


def test_a_resume_keeps_the_runs_ema_decay(tmp_path, capsys):
    train(tiny_run(tmp_path, optimizer="muon", max_iters=6))
    assert main(["train", "--resume", str(tmp_path / "run"), "--max_iters=7", "--ema_decay=0.9"]) == 1
    assert "these cannot change: ema_decay" in capsys.readouterr().err


def test_torch_and_mlx_average_alike(tmp_path):
    if not os.environ.get("GPTKIT_REQUIRE_MLX"):
        pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    from gptkit.mlx import weights as mw
    from gptkit.mlx.backend import MLXBackend
    from gptkit.training.run import Run

    kw = dict(loader="sequential", optimizer="muon", muon_lr=0.05, ema_decay=0.8, warmup_iters=0)
    tt = trainer(tiny_run(tmp_path, "torch", **kw))
    cfg = tiny_run(tmp_path, "mlx", **kw)
    xt = Run(replace(cfg, train=replace(cfg.train, backend="mlx")), MLXBackend())
    mw.load_weights(xt.backend.model, tt.backend.weights())
    xt.backend.swap_average()  # the MLX average starts from the torch run's init too
    mw.load_weights(xt.backend.model, tt.backend.weights())
    for _ in range(3):
        assert float(xt.train_step()) == pytest.approx(float(tt.train_step()), rel=1e-5)
    with tt.averaged(), xt.averaged():
        want, got = {k: v.copy() for k, v in tt.backend.weights().items()}, xt.backend.weights()  # torch's: views
        assert tt.evaluate()["val"] == pytest.approx(xt.evaluate()["val"], rel=1e-5)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=5e-5, rtol=0, err_msg=k)


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_an_ema_decay_outside_0_to_1_is_one_clear_error(value, capsys):
    with pytest.raises(ValueError, match=r"train.ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=value)
    assert main(["train", "nanogpt_cpu", f"--ema_decay={value}", "--dry-run"]) == 1
    assert "train.ema_decay must be in [0, 1)" in capsys.readouterr().err
