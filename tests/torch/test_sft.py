"""Supervised finetuning's loss is the mean over every assistant token of a step (issue 24): gradient accumulation
over micro-batches holding different numbers of them equals one big batch, and 2 gloo ranks equal one process."""

from dataclasses import replace

import numpy as np
from tests.torch.test_backend import assert_same_gradients, tiny_run, trainer
from tests.torch.test_ddp import _train

from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd


def _chat(cfg):
    """Rows of 65 tokens: a whole conversation of the reverse task (at most 46)."""
    return replace(cfg, model=replace(cfg.model, block_size=64))


def test_accumulation_over_unequal_assistant_counts_equals_one_big_batch(tmp_path, chat_data):
    kw = dict(data=str(chat_data), loader="sequential", grad_clip=0.0, warmup_iters=0)
    big = trainer(_chat(tiny_run(tmp_path, "big", batch_size=8, **kw)))
    acc = trainer(_chat(tiny_run(tmp_path, "acc", batch_size=4, total_batch_tokens=512, **kw)))
    acc.backend.model.load_state_dict(big.backend.model.state_dict())
    first = [next(iter(acc.batches)) for _ in range(2)]
    acc.batches.load_state_dict({"shard": 0, "pos": 0})
    counts = [int((y != -1).sum()) for _, y in first]
    assert acc.accum == 2 and counts[0] != counts[1]  # a mean of the two means would differ from one big batch
    assert_same_gradients(acc, big, rel=1e-6)


def test_two_gloo_ranks_equal_one_process_on_conversations(tmp_path, chat_data):
    extra = [f"--data={chat_data}", "--loader=sequential", "--optimizer=adamw"]
    _train(tmp_path / "ddp", [*extra, "--batch_size=4"], nproc=2)
    _train(tmp_path / "one", [*extra, "--batch_size=8"])
    a, _ = ckpt.read_checkpoint(tmp_path / "ddp" / rd.LAST, prefix="model.")
    b, _ = ckpt.read_checkpoint(tmp_path / "one" / rd.LAST, prefix="model.")
    for k in b:
        np.testing.assert_allclose(a[k], b[k], atol=2e-6, rtol=1e-5, err_msg=k)
