"""Activation checkpointing (the same training, less kept for the backward) and the dry-run's memory figures
(gptkit.torch.memory), checked against what autograd actually keeps."""

from dataclasses import replace

import pytest
import torch

from gptkit.cli import main
from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.torch.memory import activation_bytes, per_rank_bytes, saved_bytes
from gptkit.torch.model import build_model
from tests.torch.test_backend import tiny_run, trainer


def kept_for_backward(model, batch: int, T: int) -> int:
    """What autograd keeps in one training forward of a model with real weights on a real-sized batch: the figure the
    estimate (probes of 1-2 blocks and rows, <= 128 positions) must reach by fitting and scaling."""
    idx = torch.randint(0, model.config.vocab_size, (batch, T), generator=torch.Generator().manual_seed(0))
    return saved_bytes(model, idx)


@pytest.mark.parametrize("model", [dict(n_layer=4, n_head=4, n_embd=128, block_size=256, dropout=0.1),
                                   dict(n_layer=6, n_head=4, n_embd=256, block_size=64, vocab_size=50257),
                                   dict(n_layer=3, n_head=6, n_embd=384, block_size=200, pos="rope", norm="rmsnorm",
                                        mlp="swiglu", bias=False)])
def test_activation_estimate_is_what_autograd_keeps(model):
    """The estimate (probes of 1 and 2 blocks, 1 row, <= 128 positions, a 64-token vocabulary) equals the bytes a
    model of the real depth, batch, length and vocabulary keeps, within 0.1% (fp32; dropout's masks and the
    quadratic attention of its math path included)."""
    cfg = RunConfig(GPTConfig(**{"vocab_size": 65, **model}), TrainConfig(batch_size=3))
    torch.manual_seed(0)
    net = build_model(cfg.model).train()
    measured = kept_for_backward(net, 3, cfg.model.block_size)
    assert activation_bytes(cfg, torch.float32) == pytest.approx(measured, rel=1e-3)
    net.activation_checkpointing = True  # a checkpointed block keeps its input; the estimate adds one block's
    kept = kept_for_backward(net, 3, cfg.model.block_size)  # activations, alive while it is recomputed
    ac = activation_bytes(replace(cfg, train=replace(cfg.train, activation_checkpointing=True)), torch.float32)
    assert kept < ac < measured


def test_activation_checkpointing_trains_the_same(tmp_path):
    """Recomputed blocks give the same losses and weights (dropout masks included: the RNG is replayed)."""
    cfgs = [tiny_run(tmp_path, f"ac{on}", max_iters=4, eval_interval=4, activation_checkpointing=on) for on in (0, 1)]
    runs, results = [], []
    for c in cfgs:  # one after the other: each Run seeds the global RNG its dropout draws from
        runs.append(trainer(replace(c, model=replace(c.model, n_layer=2, dropout=0.1))))
        results.append(runs[-1].run())
    assert runs[1].backend.model.activation_checkpointing and not runs[0].backend.model.activation_checkpointing
    assert results[0].losses == pytest.approx(results[1].losses, abs=1e-6)


def test_dry_run_prints_per_process_bytes(capsys):
    """gpt2_124m (124,475,904 parameters with the 50,257-token vocabulary, padded to 50,304: 0.46 GiB of fp32) on 8
    fsdp processes: each holds 1/8 of the weights (0.06 GiB), as many of gradients, twice of AdamW's moments."""
    assert main(["train", "gpt2_124m", "--dry-run", "--nproc=8", "--parallel=fsdp", "--dtype=float32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("gpt2_124m: 124,475,904 parameters (vocab_size 50,257), 8 fsdp processes, float32 on cuda; "
                      "64 x 1,024 tokens per micro-step, 1 micro-step(s) per step")
    assert out[2] == "  weights               0.06 GiB   fp32 master weights, 1/8 of each tensor"
    assert out[3].startswith("  gradients             0.06 GiB") and out[4].startswith("  optimizer state       0.12")
    assert [ln.split()[0] for ln in out[2:]] == ["weights", "gradients", "optimizer", "gathered", "activations", "total"]


def test_dry_run_bad_input_is_one_line(capsys):
    assert main(["train", "gpt2_124m", "--dry-run", "--nproc=3"]) == 1
    assert capsys.readouterr().err.startswith("gptkit: error: total_batch_tokens=524,288 is not a multiple of "
                                              "batch_size x block_size x ranks = 64 x 1024 x 3 = 196,608")
    assert main(["train", "--dry-run", "--nproc=0"]) == 1
    assert capsys.readouterr().err == "gptkit: error: --nproc must be >= 1, got 0\n"


def test_per_rank_bytes_shards_rows_as_fsdp_does():
    """A 65-row embedding on 2 ranks: rank 0 holds 33 rows; each tensor is cut by rows, 1-D ones too."""
    cfg = RunConfig(GPTConfig(vocab_size=65, n_layer=1, n_head=2, n_embd=32, block_size=16), TrainConfig())
    whole, half = (per_rank_bytes(cfg, w, "fsdp", 1, torch.float32) for w in (1, 2))
    n = sum(p.numel() for p in build_model(cfg.model).parameters())
    assert whole["weights"] == 4 * n and whole["optimizer"] == 8 * n and whole["gathered"] == 0
    assert half["weights"] == 4 * sum(-(-p.shape[0] // 2) * (p.numel() // p.shape[0])
                                      for p in build_model(cfg.model).parameters())
    accum = per_rank_bytes(cfg, 2, "fsdp", 2, torch.float32)
    assert accum["gradients"] == half["gradients"] + 4 * n  # the unsharded gradients between micro-steps
