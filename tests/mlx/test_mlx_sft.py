"""Supervised finetuning on conversations (issue 24) in both backends: one step on the same masked chat batch from
the same weights gives the same loss and weights in MLX as in PyTorch, and a torch SFT run resumes bit for bit.

Skipped, with the reason, where mlx is not installed; CI sets GPTKIT_REQUIRE_MLX=1 and runs them.
"""

import json
import os
from dataclasses import replace

import pytest

if os.environ.get("GPTKIT_REQUIRE_MLX") == "1":
    import mlx.core  # noqa: F401 (CI: a missing mlx must fail, not skip)
mx = pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")

from tests.mlx.test_mlx_train import assert_one_step_like_one_big_batch, assert_steps_agree, mlx_trainer  # noqa: E402
from tests.torch.test_backend import tiny_run, trainer  # noqa: E402

from gptkit.torch.backend import train  # noqa: E402
from gptkit.training.setup import resume_config  # noqa: E402


def _chat_run(tmp_path, name, data, **kw):
    """tiny_run on the chat data, with rows of 65 tokens: a whole conversation of the reverse task (at most 46)."""
    cfg = tiny_run(tmp_path, name, data=str(data), **kw)
    return replace(cfg, model=replace(cfg.model, vocab_size=67, block_size=64))


def test_a_masked_step_is_the_same_in_mlx_and_torch(tmp_path, chat_data):
    kw = dict(loader="sequential", grad_clip=1.0, lr=3e-3, warmup_iters=0)
    tt = trainer(_chat_run(tmp_path, "torch", chat_data, **kw))
    cfg = _chat_run(tmp_path, "mlx", chat_data, **kw)
    assert_steps_agree(tt, mlx_trainer(replace(cfg, train=replace(cfg.train, backend="mlx"))))


def test_an_sft_run_resumes_bit_for_bit(tmp_path, chat_data):
    def run(name, **kw):
        return _chat_run(tmp_path, name, chat_data, eval_interval=4, lr_decay_iters=8, **kw)

    whole = train(run("whole", max_iters=8))
    first = train(run("parts", max_iters=4))
    rest = train(resume_config(tmp_path / "parts", ["--max_iters=8"]), resume=True)
    assert first.losses + rest.losses == whole.losses and min(whole.losses) > 0  # rows with replies in them
    records = [json.loads(x) for x in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in records] == [e["val_loss"] for e in whole.evals]


def test_mlx_accumulation_over_unequal_assistant_counts_equals_one_big_batch(tmp_path, chat_data):
    def run(name, **kw):
        cfg = _chat_run(tmp_path, name, chat_data, loader="sequential", grad_clip=0.0, **kw)
        return replace(cfg, train=replace(cfg.train, backend="mlx"))

    big = mlx_trainer(run("big", batch_size=8))
    acc = mlx_trainer(run("acc", batch_size=4, total_batch_tokens=512))
    assert_one_step_like_one_big_batch(acc, big, atol=1e-5)
