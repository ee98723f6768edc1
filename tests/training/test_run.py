"""The Run drives any backend: a third one (a numpy bigram, below) gets evaluation cadence, checkpoints, exact
resume and stop reasons from the shared code; and run dirs written before the Run existed still resume."""

import json
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd
from gptkit.training.backend import Backend
from gptkit.training.run import Run, StopReason, TrainingDiverged, train_with
from gptkit.training.setup import resume_config

FIXTURES = Path(__file__).parent.parent / "fixtures" / "run_v1"


class NumpyBigram(Backend):
    """A bigram table trained by SGD with momentum in numpy: the whole backend contract in a few lines."""

    name = "numpy"

    def seed(self, seed):
        self.rng = np.random.default_rng(seed)

    def build(self, model, train, init, source):
        V = model.vocab_size
        self.W = init["wte.weight"] if init else self.rng.normal(0, 0.02, (V, V))
        self.m = np.zeros_like(self.W)
        self.avg = self.W.copy()

    def _loss_grad(self, x, y):
        p = np.exp(self.W[x.ravel()])  # (B*T, V): softmax of the rows of the current tokens
        p /= p.sum(-1, keepdims=True)
        rows, targets = np.arange(x.size), y.ravel()
        loss = -np.log(p[rows, targets]).mean()
        p[rows, targets] -= 1  # d loss / d logits, times B*T
        grad = np.zeros_like(self.W)
        np.add.at(grad, x.ravel(), p / x.size)
        return loss, grad

    def train_step(self, step, batches, lr):
        results = [self._loss_grad(x, y) for x, y in batches]
        self.m = 0.9 * self.m + sum(g for _, g in results) / len(batches)
        self.W = self.W - lr * self.m
        return np.mean([loss for loss, _ in results])

    def eval_loss(self, batches):
        return float(np.mean([self._loss_grad(x, y)[0] for x, y in batches]))

    def sample(self, prompt, max_new_tokens, *, seed, temperature, top_k, stop_token):
        ids = list(prompt)
        for _ in range(max_new_tokens):
            ids.append(int(self.W[ids[-1]].argmax()))
        return ids[len(prompt):]

    def weights(self):
        return {"wte.weight": self.W}

    def load_weights(self, tensors, source):
        self.W = tensors["wte.weight"]

    def average(self, decay):
        self.avg = decay * self.avg + (1 - decay) * self.W

    def swap_average(self):
        self.W, self.avg = self.avg, self.W

    def optimizer_state(self):
        return {"momentum": self.m}, {"numpy_optimizer": 1}

    def load_optimizer_state(self, tensors, meta):
        assert meta["numpy_optimizer"] == 1
        self.m = tensors["momentum"]


def bigram_run(tmp_path, name="run", **train_kw) -> RunConfig:
    model = GPTConfig(arch="bigram", vocab_size=65, block_size=8, n_layer=1, n_head=1, n_embd=1)
    t = dict(data="shakespeare_char", out_dir=str(tmp_path / name), batch_size=4, max_iters=8, eval_interval=3,
             eval_iters=2, warmup_iters=1, lr=20.0, min_lr=1.0, lr_decay_iters=8, sample_tokens=4, progress=False)
    return RunConfig(model, TrainConfig(**{**t, **train_kw}), name="test")


def test_a_third_backend_gets_cadence_checkpoints_and_metrics(tmp_path):
    result = train_with(NumpyBigram(), bigram_run(tmp_path))
    assert result.stopped is StopReason.DONE and result.step == 8 and len(result.losses) == 8
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 3, 6, 8]  # every eval_interval, and the last step
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.3  # it learns: from ~ln 65 = 4.17
    tensors, meta = ckpt.read_checkpoint(tmp_path / "run" / rd.LAST)
    assert meta["step"] == 8 and meta["backend"] == "numpy" and meta["numpy_optimizer"] == 1
    assert set(tensors) == {"model.wte.weight", "optim.momentum"} and meta["ranks"][0]["loader"]
    assert ckpt.read_checkpoint(tmp_path / "run" / rd.BEST)[1]["best_val"] == min(r["val_loss"] for r in records)


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_a_third_backend_resumes_exactly(tmp_path, ema_decay):
    """With a weight average too: the Run evaluates and saves it through the backend's swap_average and restores it
    from the checkpoint's model. weights (the live ones from live.)."""
    whole = train_with(NumpyBigram(), bigram_run(tmp_path, "whole", ema_decay=ema_decay))
    first = train_with(NumpyBigram(), bigram_run(tmp_path, "parts", max_iters=5, ema_decay=ema_decay))
    rest = train_with(NumpyBigram(), resume_config(tmp_path / "parts", ["--max_iters=8"]), resume=True)
    assert first.losses + rest.losses == whole.losses  # data position and optimizer state came back
    assert [(e["step"], e["val_loss"]) for e in rest.evals] == [(e["step"], e["val_loss"]) for e in whole.evals[-2:]]
    with pytest.raises(ValueError, match="written by the numpy backend; resume it with --backend numpy"):
        Run(resume_config(tmp_path / "parts", []), FakeTorch(), resume=True)


class FakeTorch(NumpyBigram):
    name = "torch"


def test_stop_reasons(tmp_path):
    timed = train_with(NumpyBigram(), bigram_run(tmp_path, "time", max_iters=10**6, max_seconds=0.3))
    assert timed.stopped is StopReason.TIME and timed.evals[-1]["step"] == timed.step > 0
    run = Run(bigram_run(tmp_path, "ctrl_c"), NumpyBigram())
    step = run.train_step

    def step_then_ctrl_c():
        loss = step()
        if run.step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag: the step finishes, then a checkpoint
        return loss

    run.train_step = step_then_ctrl_c
    result = run.run()
    assert result.stopped is StopReason.INTERRUPTED and result.step == 4 and result.stopped == "interrupted"
    assert ckpt.read_checkpoint(tmp_path / "ctrl_c" / rd.LAST)[1]["step"] == 4


def test_a_nan_loss_names_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run = Run(bigram_run(tmp_path, max_iters=20, eval_interval=5, log_interval=4), NumpyBigram())
    step = run.backend.train_step
    run.backend.train_step = lambda s, b, lr: float("nan") if s >= 6 else step(s, b, lr)  # steps 7, 8, ...
    with pytest.raises(TrainingDiverged, match="at step 7;"):
        run.run()  # read back at step 8 (log_interval 4), before step 10's checkpoint could take the NaN weights
    assert ckpt.read_checkpoint(tmp_path / "run" / rd.LAST)[1]["step"] == 5


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_a_run_dir_of_the_previous_version_resumes_with_its_losses(tmp_path, backend):
    """tests/data/run_v1 was written by gptkit before the Run existed (see resumed_by_v1.json's source); resuming
    it now must give the losses that version gave."""
    if backend == "mlx":
        if not os.environ.get("GPTKIT_REQUIRE_MLX"):  # CI installs mlx: there a missing mlx fails, not skips
            pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
        from gptkit.mlx.backend import train
    else:
        from gptkit.torch.backend import train
    want = json.loads((FIXTURES / "resumed_by_v1.json").read_text())[backend]
    run_dir = shutil.copytree(FIXTURES / backend, tmp_path / "run")
    result = train(resume_config(run_dir, ["--max_iters=8"]), resume=True)
    assert result.losses == pytest.approx(want["losses"], rel=1e-6)
    assert [e["val_loss"] for e in result.evals] == pytest.approx(want["val_loss"], rel=1e-6)
    assert [e["train_loss"] for e in result.evals] == pytest.approx(want["train_loss"], rel=1e-6)


def test_sample_text_goes_through_the_backend_and_the_tokenizer(tmp_path):
    run = Run(replace(bigram_run(tmp_path), train=replace(bigram_run(tmp_path).train, sample_prompt="ab")),
              NumpyBigram())
    text = run.sample_text()
    assert text.startswith("ab") and len(text) == 2 + 4
