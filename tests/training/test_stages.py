"""Supervised finetuning as a user runs it (issue 24): a built-in chat task as --data (prepared on first use with the
--init_from model's tokenizer), --epochs, and the two-stage `chat` preset (base training, then finetuning from it)."""

import json
import math
import shutil

import pytest

from gptkit.cli import main
from gptkit.config import load_stages
from gptkit.data.packing import PackedRows

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--eval_iters=1", "--progress=false", "--sample_tokens=0"]


def test_the_chat_preset_is_two_runs_the_second_from_the_first():
    base, sft = load_stages("chat")
    assert (str(base.run_dir), str(sft.run_dir)) == ("runs/chat_base", "runs/chat")
    assert (base.train.data, sft.train.data, sft.train.init_from) == ("shakespeare_char", "reverse", "runs/chat_base")
    assert (base.train.optimizer, sft.train.optimizer) == ("muon", "muon")  # [train] fields carry over...
    assert (base.train.lr, sft.train.lr, sft.train.epochs) == (6e-3, 3e-3, 5.0)  # ...under [finetune]'s
    assert sft.model == base.model


def test_overrides_apply_to_both_stages_and_finetune_dot_to_the_second():
    base, sft = load_stages("chat", ["--seed=2", "--out_dir=x/y", "--finetune.lr=1e-3", "--n_layer=2"])
    assert (base.train.seed, sft.train.seed, base.model.n_layer, sft.model.n_layer) == (2, 2, 2, 2)
    assert (base.train.lr, sft.train.lr) == (6e-3, 1e-3)
    assert sft.train.min_lr == pytest.approx(1e-4)  # the [finetune] decay ratio kept, as for a bare --lr
    assert (str(base.run_dir), str(sft.run_dir), sft.train.init_from) == ("x/y_base", "x/y", "x/y_base")
    assert load_stages("chat", ["--data=d"])[1].train.data == "reverse"  # a stage's own data stays its own
    _, sft = load_stages("chat", ["--max_iters=7"])
    assert (sft.train.max_iters, sft.train.epochs) == (7, 0.0)  # a --max_iters given outright wins over epochs
    assert load_stages("shakespeare_char", ["--epochs=2", "--max_iters=7"])[0].train.epochs == 0.0
    with pytest.raises(ValueError, match="has one stage"):
        load_stages("shakespeare_char", ["--finetune.lr=1e-3"])


def test_a_chat_task_as_data_is_prepared_with_the_init_from_tokenizer(tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train", *TINY, "--max_iters=1", "--eval_interval=1", f"--out_dir={base}"]) == 0
    assert main(["train", *TINY, "--data=reverse", f"--out_dir={tmp_path / 'x'}"]) == 1
    assert "--data=reverse is a chat task, learned by finetuning a model: pass --init_from" in capsys.readouterr().err
    assert main(["train", *TINY, "--data=reverse", f"--init_from={base}", "--max_iters=2", "--eval_interval=2",
                 f"--out_dir={tmp_path / 'sft'}"]) == 0
    config = json.loads((tmp_path / "sft" / "config.json").read_text())
    assert config["model"]["vocab_size"] == 67  # 65 characters + the ChatML tokens: the model grew
    assert config["tokenizer"]["chat"] == {"template": None, "end_of_turn": "<|im_end|>", "variables": {}}
    data = config["train"]["data"]
    assert "chat-reverse-" in data and json.loads(open(f"{data}/meta.json").read())["chat"]["conversations"] == {
        "train": 4500, "val": 500}


def test_rows_per_epoch_counts_the_rows_of_one_pass(chat_data):
    rows = PackedRows(chat_data, "train", 1, 48, seed=3)
    want = rows.rows_per_epoch()
    n = 0
    while rows.epoch == 0:
        next(rows)
        n += 1
    assert n - 1 <= want <= n  # the row that crossed into epoch 1 holds conversations of both
    assert want > len(rows.starts) / 2  # 48 + 1 tokens hold one or two conversations of 25 to 45 tokens


def test_epochs_set_max_iters(tmp_path, chat_data, data_dir):
    base = tmp_path / "base"
    assert main(["train", *TINY, "--max_iters=1", "--eval_interval=1", "--block_size=64", f"--out_dir={base}"]) == 0
    assert main(["prepare", "--chat", "reverse", "-t", str(base), "-o", str(tmp_path / "d")]) == 0
    assert main(["train", *TINY, "--epochs=0.05", "--eval_interval=1000", "--batch_size=8", "--block_size=64",
                 f"--init_from={base}", f"--data={tmp_path / 'd'}", f"--out_dir={tmp_path / 'sft'}"]) == 0
    rows = PackedRows(tmp_path / "d", "train", 8, 64, seed=1337).rows_per_epoch()
    saved = json.loads((tmp_path / "sft" / "config.json").read_text())["train"]
    assert saved["max_iters"] == math.ceil(0.05 * rows / 8) and saved["epochs"] == 0.05
    assert main(["train", *TINY, "--epochs=0.5", "--batch_size=4", "--block_size=64",
                 f"--out_dir={tmp_path / 'text'}", "--eval_interval=1000", "--max_seconds=0.001"]) == 0
    saved = json.loads((tmp_path / "text" / "config.json").read_text())["train"]
    assert saved["max_iters"] == math.ceil(0.5 * 1_003_854 / (4 * 64))  # tiny Shakespeare's train split, in chars


def test_the_chat_preset_trains_both_stages_and_resumes_them(tmp_path, capsys):
    out = tmp_path / "chat"
    opts = [*TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={out}"]
    assert main(["train", "chat", *opts, "--progress=true"]) == 0
    err = capsys.readouterr().err
    assert f"stage 1 of 2: {out}_base" in err and f"stage 2 of 2: {out} (from {out}_base)" in err
    assert json.loads((out / "config.json").read_text())["train"]["init_from"] == f"{out}_base"
    assert main(["train", "chat", *opts]) == 1  # a fresh start refuses before training anything
    assert "already holds a run" in capsys.readouterr().err
    shutil.rmtree(out)  # the second stage lost: --resume finds the first finished (nothing to do) and redoes it
    assert main(["train", "chat", "--resume", *opts[:-3], "--max_iters=3", f"--out_dir={out}"]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 3]  # a fresh run with this command's options: 3 steps, the preset's eval_interval
    base = [json.loads(x)["step"] for x in (tmp_path / "chat_base" / "metrics.jsonl").read_text().splitlines()]
    assert base == [0, 2, 3]  # the first stage continued to the new max_iters, its model options as saved
