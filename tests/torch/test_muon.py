"""optimizer="muon": Newton-Schulz, the update, which parameters it takes, accumulation, exact resume, DDP,
torch.compile, and the same weights from the torch and MLX backends after three steps from one state."""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from tests.torch.test_backend import tiny_run, trainer

from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.torch.backend import train
from gptkit.torch.optim import Muon, configure_optimizers, newton_schulz
from gptkit.torch.weights import model_tensors
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd
from gptkit.training.backend import takes_muon
from gptkit.training.setup import resume_config


def muon_run(tmp_path, name="run", **kw) -> RunConfig:
    return tiny_run(tmp_path, name, optimizer="muon", muon_lr=0.05, **kw)


def test_newton_schulz_docstring_example_and_orthogonality():
    out = newton_schulz(torch.diag(torch.tensor([3.0, 0.5])))
    assert torch.allclose(out, torch.diag(out.diagonal()), atol=1e-6)  # still diagonal: U and V are kept
    assert ((out.diagonal() > 0.6) & (out.diagonal() < 1.25)).all()  # both singular values moved towards 1
    G = torch.randn(48, 16, generator=torch.Generator().manual_seed(0))  # tall: iterates on the 16 x 16 side
    s = torch.linalg.svdvals(newton_schulz(G))
    assert ((s > 0.6) & (s < 1.25)).all(), s


@pytest.mark.parametrize("shape", [(3, 24, 96), (3, 96, 24), (2, 16, 32), (40, 10)])
def test_gram_form_is_the_plain_loop(shape, monkeypatch):
    """fp32 matrices with one side at least twice the other take the Gram form (gptkit.torch.optim._gram_iterations):
    the same five steps as the plain loop, which float64 runs: to 2e-6 on well-conditioned matrices (the plain fp32
    loop's own error is about 1e-6), to 2e-4 on one whose singular values span four decades (measured 8.6e-5 at worst
    over these shapes: the Gram form's rounding grows with the condition number; bf16 Newton-Schulz errs by ~1e-2)."""
    g = torch.Generator().manual_seed(0)
    G = torch.randn(shape, generator=g)
    G[0] *= torch.logspace(-4, 0, shape[-1])  # singular values over four decades
    reference = newton_schulz(G.double(), dtype=torch.float64)  # not float32: the plain loop
    from gptkit.torch import optim

    calls, gram = [], optim._gram_iterations
    monkeypatch.setattr(optim, "_gram_iterations", lambda X, steps: calls.append(X.shape) or gram(X, steps))
    out = newton_schulz(G)
    assert len(calls) == 1 and calls[0][-1] >= 2 * calls[0][-2]  # wide after the transpose of a tall stack
    assert out.dtype == torch.float32 and out.shape == G.shape
    torch.testing.assert_close(out[1:].double(), reference[1:], atol=2e-6, rtol=0)
    torch.testing.assert_close(out[0].double(), reference[0], atol=2e-4, rtol=0)
    sq = torch.randn(3, 16, 16, generator=g)  # square: the plain loop in every dtype
    torch.testing.assert_close(newton_schulz(sq).double(), newton_schulz(sq.double(), dtype=torch.float64), atol=1e-5,
                               rtol=0)
    assert len(calls) == 1


def test_one_step_by_hand():
    p = torch.nn.Parameter(torch.zeros(4, 2))
    opt = Muon([p], lr=0.1, momentum=0.9)
    g = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    p.grad = g.clone()
    opt.step()
    buf = 0.1 * g  # m buf + (1 - m) g, from buf = 0
    update = g + 0.9 * (buf - g)  # Nesterov
    torch.testing.assert_close(p.detach(), -0.1 * np.sqrt(2.0) * newton_schulz(update))  # sqrt(max(1, 4 / 2))
    assert torch.equal(opt.state[p]["momentum_buffer"], buf)


def test_weight_decay_is_decoupled_and_scheduled_with_the_lr():
    """w <- w (1 - lr wd) - lr s NS(u): AdamW's decoupled form (Loshchilov & Hutter), the one Moonlight's Muon uses;
    the lr is the group's, so the decay follows the schedule."""
    g0 = torch.Generator().manual_seed(2)
    w0, g = torch.randn(4, 2, generator=g0), torch.randn(4, 2, generator=g0)
    p = torch.nn.Parameter(w0.clone())
    opt = Muon([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    opt.param_groups[0]["lr"] = 0.05  # as the backend sets it each step
    p.grad = g.clone()
    opt.step()
    update = g + 0.9 * (0.1 * g - g)
    torch.testing.assert_close(p.detach(), w0 * (1 - 0.05 * 0.5) - 0.05 * np.sqrt(2.0) * newton_schulz(update))
    q = torch.nn.Parameter(w0.clone())  # no decay: the plain step
    plain = Muon([q], lr=0.05, momentum=0.9)
    q.grad = g.clone()
    plain.step()
    torch.testing.assert_close(p.detach(), q.detach() - 0.05 * 0.5 * w0)


def test_muon_takes_the_block_matrices_and_adamw_the_rest(tmp_path):
    from gptkit.torch.model import GPT

    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, tie_weights=False))
    opts = configure_optimizers(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon = sorted(names[id(p)] for g in opts["muon"].param_groups for p in g["params"])
    assert muon == sorted(n for n, p in model.named_parameters() if n.startswith("h.") and p.dim() == 2)
    adamw = {names[id(p)] for g in opts["adamw"].param_groups for p in g["params"]}
    assert {"wte.weight", "wpe.weight", "lm_head.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.bias"} <= adamw
    assert not adamw & set(muon)
    assert takes_muon("h.3.mlp.c_gate.weight", 2) and not takes_muon("lm_head.weight", 2)


def test_bad_input():
    with pytest.raises(ValueError, match="train.optimizer='muon' needs the matrices.*arch='bigram'"):
        RunConfig(GPTConfig.from_preset("bigram"), TrainConfig(optimizer="muon"))
    with pytest.raises(ValueError, match="train.optimizer must be 'adamw' or 'muon'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="muon_lr > 0"):
        TrainConfig(muon_lr=0.0)


def test_accumulation_updates_like_one_big_batch(tmp_path):
    big = trainer(muon_run(tmp_path, "big", loader="sequential", batch_size=8, grad_clip=0.0))
    acc = trainer(muon_run(tmp_path, "acc", loader="sequential", batch_size=4, total_batch_tokens=128, grad_clip=0.0))
    assert float(acc.train_step()) == pytest.approx(float(big.train_step()), rel=1e-5)
    for (name, pa), pb in zip(acc.backend.model.named_parameters(), big.backend.model.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=name)


def test_resume_is_bit_exact_and_the_checkpoint_holds_muon_state(tmp_path):
    model = replace(tiny_run(tmp_path).model, dropout=0.1)
    full = train(replace(muon_run(tmp_path, "full", max_iters=12, lr_decay_iters=12), model=model))
    part1 = train(replace(muon_run(tmp_path, "split", max_iters=7, lr_decay_iters=12), model=model))
    tensors, meta = ckpt.read_checkpoint(tmp_path / "split" / rd.LAST)
    assert any(k.startswith("optim.muon.") and k.endswith(".momentum_buffer") for k in tensors)
    assert meta["muon_param_groups"][0]["momentum"] == 0.95
    part2 = train(resume_config(tmp_path / "split", ["--max_iters=12"]), resume=True)
    assert part1.losses + part2.losses == full.losses
    assert full.evals[-1]["val_loss"] < full.evals[0]["val_loss"] - 0.3  # and it learns


def test_a_muon_checkpoint_from_before_the_weight_decay_resumes_bit_exact(tmp_path):
    """Checkpoints written before muon_weight_decay hold Muon's param groups without the key (and configs without the
    field): they resume, with no decay, to the losses of the uninterrupted run."""
    full = train(muon_run(tmp_path, "full", max_iters=8, lr_decay_iters=8))
    part1 = train(muon_run(tmp_path, "split", max_iters=4, lr_decay_iters=8))
    for name in (rd.LAST, rd.BEST):
        tensors, meta = ckpt.read_checkpoint(tmp_path / "split" / name)
        for group in meta["muon_param_groups"]:
            del group["weight_decay"]
        del meta["train"]["muon_weight_decay"]
        ckpt.save_checkpoint(tmp_path / "split" / name, tensors, meta)
    part2 = train(resume_config(tmp_path / "split", ["--max_iters=8"]), resume=True)
    assert part1.losses + part2.losses == full.losses


def test_compile_and_muon(tmp_path, monkeypatch):
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: compile_(m, backend="eager"))
    result = train(muon_run(tmp_path, max_iters=4, eval_interval=2, compile=True))
    assert result.step == 4 and all(np.isfinite(result.losses))


def test_two_gloo_ranks_equal_one_process(tmp_path):
    from tests.torch.test_ddp import ARGS

    def run(out, extra, nproc=None):
        cmd = [sys.executable, "-m", "gptkit", "train", "nanogpt_cpu", *ARGS, "--optimizer=muon", f"--out_dir={out}",
               "--dtype=float32", *extra]
        if nproc:
            cmd[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "gptkit"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]

    run(tmp_path / "ddp", ["--batch_size=4"], nproc=2)
    run(tmp_path / "one", ["--batch_size=8"])
    a, _ = ckpt.read_checkpoint(tmp_path / "ddp" / rd.LAST, prefix="model.")
    b, _ = ckpt.read_checkpoint(tmp_path / "one" / rd.LAST, prefix="model.")
    for k in b:
        np.testing.assert_allclose(a[k], b[k], atol=2e-5, rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("clip,muon_wd", [(1.0, 0.0), (0.0, 0.5)], ids=["clipped", "unclipped-muon-decay"])
def test_torch_and_mlx_give_the_same_weights_after_three_steps(tmp_path, clip, muon_wd):
    if not os.environ.get("GPTKIT_REQUIRE_MLX"):
        pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    from gptkit.mlx import weights as mw
    from gptkit.mlx.backend import MLXBackend
    from gptkit.training.run import Run

    kw = dict(loader="sequential", grad_clip=clip, weight_decay=0.1, lr=3e-3, warmup_iters=0, muon_weight_decay=muon_wd)
    tt = trainer(muon_run(tmp_path, "torch", **kw))
    cfg = muon_run(tmp_path, "mlx", **kw)
    xt = Run(replace(cfg, train=replace(cfg.train, backend="mlx")), MLXBackend())
    mw.load_weights(xt.backend.model, model_tensors(tt.backend.model))
    for _ in range(3):
        assert float(xt.train_step()) == pytest.approx(float(tt.train_step()), rel=1e-5)
    want, got = model_tensors(tt.backend.model), mw.model_tensors(xt.backend.model)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=5e-5, rtol=0, err_msg=k)


def test_mlx_resume_with_muon_continues_with_the_same_losses(tmp_path):
    if not os.environ.get("GPTKIT_REQUIRE_MLX"):
        pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    from gptkit.mlx.backend import train as mlx_train

    def run(name, **kw):
        cfg = muon_run(tmp_path, name, eval_interval=4, lr_decay_iters=8, **kw)
        return replace(cfg, train=replace(cfg.train, backend="mlx"))

    whole = mlx_train(run("whole", max_iters=8))
    first = mlx_train(run("parts", max_iters=4))
    rest = mlx_train(resume_config(tmp_path / "parts", ["--max_iters=8"]), resume=True)
    # bit for bit, as the torch backend's (and MLX's AdamW: tests/mlx/test_mlx_train.py): the checkpoint holds the fp32
    # weights and both optimizers' state exactly, and the resumed run repeats the same operations on them
    assert first.losses + rest.losses == whole.losses


def test_bf16_autocast_with_muon_runs_newton_schulz_in_bf16(tmp_path):
    tr = trainer(muon_run(tmp_path, dtype="bfloat16", max_iters=3))
    assert tr.backend.optimizers["muon"].ns_dtype == torch.bfloat16  # the run's precision
    result = tr.run()
    assert result.step == 3 and all(np.isfinite(result.losses))
    assert trainer(muon_run(tmp_path, "fp32", max_iters=3)).backend.optimizers["muon"].ns_dtype == torch.float32
