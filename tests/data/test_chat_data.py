"""`gptkit prepare --chat` (issue 24): conversations in OpenAI's messages format or prompt/completion pairs become
ChatML token files with an assistant-only loss mask beside them; the loaders turn the mask into -1 targets, so the
training loss is cross-entropy over the assistant's tokens only; every malformed row is named by file and line."""

import json

import numpy as np
import pytest

from gptkit import CharTokenizer
from gptkit.cli import main
from gptkit.data.loaders import RandomBatches, ShardedLoader
from gptkit.tokenizer.chat import IM_END, IM_START, ChatFormat, encode_chat
from gptkit.tokenizer.load import load_tokenizer

ROWS = [{"messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Sky?"},
                      {"role": "assistant", "content": "blue"}]},
        {"prompt": "Grass?", "completion": "green"}] + [
        {"messages": [{"role": "user", "content": f"Say {w} {v}."}, {"role": "assistant", "content": f"{v} {w}"}]}
        for w in ("one", "two", "three", "four", "five", "six", "seven") for v in ("red", "tan", "gold", "grey", "pink",
                                                                                   "jade")]


@pytest.fixture
def chat_file(tmp_path, shakespeare):
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    CharTokenizer.train(shakespeare).save(tmp_path / "char.model")
    return tmp_path / "chat.jsonl"


def test_conversations_become_chatml_ids_and_an_assistant_mask(tmp_path, chat_file, capsys):
    out = tmp_path / "d"
    assert main(["prepare", "--chat", str(chat_file), "-t", str(tmp_path / "char.model"), "-o", str(out)]) == 0
    assert "40 conversations (1,714 tokens) for train, 4 (184) for val" in capsys.readouterr().out  # 10% for val
    meta = json.loads((out / "meta.json").read_text())
    tok = load_tokenizer(out / "tokenizer.model")
    assert tok.special_tokens == {IM_START: 65, IM_END: 66} and meta["tokenizer"]["vocab_size"] == 67
    assert meta["chat"]["conversations"] == {"train": 40, "val": 4} and meta["chat"]["skipped"] == 0
    want = [encode_chat(tok, ChatFormat.chatml(), r["messages"] if "messages" in r else
                        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}])
            for r in ROWS]
    ids = np.fromfile(out / "train.bin", dtype=np.uint16).tolist()
    mask = np.fromfile(out / "train.mask", dtype=np.uint8).tolist()
    assert ids == [i for w, _ in want[:40] for i in w] and mask == [m for _, w in want[:40] for m in w]
    assert tok.decode([i for i, m in zip(ids, mask) if m]).startswith(f"blue{IM_END}green{IM_END}red one{IM_END}")


def test_the_loaders_target_only_the_assistant(tmp_path, chat_file):
    out = tmp_path / "d"
    assert main(["prepare", "--chat", str(chat_file), "-t", str(tmp_path / "char.model"), "-o", str(out)]) == 0
    ids = np.fromfile(out / "train.bin", dtype=np.uint16).astype(np.int64)
    mask = np.fromfile(out / "train.mask", dtype=np.uint8)
    rb = RandomBatches(out, "train", 8, 16, seed=3)
    rng = np.random.default_rng(3)  # RandomBatches' own draw, to know where each row starts
    x, y = next(rb)
    starts = rng.integers(0, len(ids) - 16, size=8)
    for row, i in enumerate(starts):
        assert (x[row] == ids[i : i + 16]).all()
        assert (y[row] == np.where(mask[i + 1 : i + 17] == 1, ids[i + 1 : i + 17], -1)).all()
    x, y = next(ShardedLoader(out, "train", 4, 32))  # the first 128 tokens: three conversations
    assert (y.ravel() == np.where(mask[1:129] == 1, ids[1:129], -1)).all() and (y == -1).any() and (y != -1).any()


def test_the_training_loss_is_the_assistants_cross_entropy_only(tmp_path, chat_file):
    """The bar's check: the user's tokens do not count; the loss is cross-entropy over the assistant's targets."""
    import torch
    from torch.nn import functional as F

    from gptkit.config import GPTConfig
    from gptkit.torch.model import GPT

    out = tmp_path / "d"
    assert main(["prepare", "--chat", str(chat_file), "-t", str(tmp_path / "char.model"), "-o", str(out)]) == 0
    x, y = next(RandomBatches(out, "train", 8, 32, seed=0))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=67, block_size=32, n_layer=1, n_head=2, n_embd=32))
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    logits, loss = model(x, y)
    keep = y != -1
    assert 0 < keep.sum() < y.numel()
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], y[keep]))
    logits2, _ = model(x, torch.where(keep, y, 5))  # the same inputs: the masked targets are what was left out
    torch.testing.assert_close(loss, F.cross_entropy(logits2[keep], y[keep]))


@pytest.mark.parametrize("line,words", [
    ("{not json", "not a JSON line"),
    ('{"text": "plain"}', "not a conversation"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),
    ('{"messages": [{"role": "user", "content": ""}]}', "no text"),
    ('{"messages": [{"role": "user", "content": 5}]}', "no text"),
    ('{"messages": [{"role": "user", "content": "only a question"}]}', "no assistant turn"),
    ('{"messages": "hi"}', "non-empty list"),
])
def test_each_malformed_row_is_named_or_skipped_and_counted(tmp_path, chat_file, capsys, line, words):
    lines = chat_file.read_text().splitlines()
    chat_file.write_text("\n".join(lines[:3] + [line] + lines[3:]) + "\n")
    argv = ["prepare", "--chat", str(chat_file), "-t", str(tmp_path / "char.model"), "-o", str(tmp_path / "d")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "chat.jsonl:4: " in err and words in err and "--skip-bad" in err and err.count("\n") == 1
    assert main([*argv, "--skip-bad"]) == 0
    assert "1 bad rows left out" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["chat"]["skipped"] == 1


def test_a_character_the_vocabulary_lacks_names_its_row(tmp_path, chat_file, capsys):
    chat_file.write_text(chat_file.read_text() + json.dumps({"prompt": "2+2", "completion": "4"}) + "\n")
    argv = ["prepare", "--chat", str(chat_file), "-t", str(tmp_path / "char.model"), "-o", str(tmp_path / "d")]
    assert main(argv) == 1
    assert "chat.jsonl:45: character '2' at position" in capsys.readouterr().err


def test_the_wrong_command_says_which_to_use(tmp_path, chat_file, capsys, data_dir):
    assert main(["prepare", str(chat_file), "-t", "gpt2", "-o", str(tmp_path / "t")]) == 1
    assert "these are conversations: `gptkit prepare --chat`" in capsys.readouterr().err
    (tmp_path / "plain.jsonl").write_text('{"text": "hello"}\n')
    assert main(["prepare", "--chat", str(tmp_path / "plain.jsonl"), "-o", str(tmp_path / "c")]) == 1
    assert "plain text is `gptkit prepare` without --chat" in capsys.readouterr().err


def test_finetuning_a_run_on_conversations_grows_it_and_trains(tmp_path, chat_file):
    run = tmp_path / "base"
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=64", "--eval_iters=2", "--progress=false",
            "--sample_tokens=0"]  # a row of 65 tokens holds a whole conversation of this file (the longest: 50)
    assert main(["train", *tiny, "--max_iters=2", "--eval_interval=2", f"--out_dir={run}"]) == 0
    assert main(["prepare", "--chat", str(chat_file), "-t", str(run), "-o", str(tmp_path / "chat")]) == 0
    assert main(["train", *tiny, "--max_iters=30", "--eval_interval=30", f"--init_from={run}",
                 f"--data={tmp_path / 'chat'}", f"--out_dir={tmp_path / 'sft'}", "--batch_size=8"]) == 0
    records = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_loss"] < records[0]["val_loss"]  # it learns the replies
    assert json.loads((tmp_path / "sft" / "config.json").read_text())["model"]["vocab_size"] == 67


def test_conversations_longer_than_a_row_are_warned_about(tmp_path, chat_file, capsys):
    run = tmp_path / "base"
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--eval_iters=1", "--progress=false",
            "--sample_tokens=0"]
    assert main(["train", *tiny, "--max_iters=1", "--eval_interval=1", f"--out_dir={run}"]) == 0
    assert main(["prepare", "--chat", str(chat_file), "-t", str(run), "-o", str(tmp_path / "chat")]) == 0
    capsys.readouterr()
    assert main(["train", *tiny, "--max_iters=1", "--eval_interval=1", f"--init_from={run}",
                 f"--data={tmp_path / 'chat'}", f"--out_dir={tmp_path / 'sft'}"]) == 0
    err = capsys.readouterr().err
    assert "gptkit: warning: " in err and "of 40 training conversations are longer than block_size + 1 = 33" in err



def test_parquet_rows_in_smoltalks_layout_equal_the_jsonl_lines(tmp_path, chat_file, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r if "messages" in r else {"messages": [{"role": "user", "content": r["prompt"]},
                                                    {"role": "assistant", "content": r["completion"]}]} for r in ROWS]
    folder = tmp_path / "smoltalk"  # SmolTalk's columns: messages (list of role/content structs) and source
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([{**r, "source": "handmade"} for r in rows]), folder / "train.parquet")
    char = str(tmp_path / "char.model")
    assert main(["prepare", "--chat", str(chat_file), "-t", char, "-o", str(tmp_path / "j")]) == 0
    assert main(["prepare", "--chat", str(folder), "-t", char, "-o", str(tmp_path / "p")]) == 0
    for name in ("train.bin", "train.mask", "train.idx", "val.bin", "val.mask", "val.idx"):
        assert (tmp_path / "p" / name).read_bytes() == (tmp_path / "j" / name).read_bytes(), name
    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "user", "content": "hi"}]}] * 3), folder / "bad.parquet")
    assert main(["prepare", "--chat", str(folder / "bad.parquet"), "-t", char, "-o", str(tmp_path / "b")]) == 1
    assert f"{folder / 'bad.parquet'}: row 1: no assistant turn" in capsys.readouterr().err


def test_a_failure_while_writing_leaves_no_temp_files(tmp_path, chat_file, monkeypatch):
    from gptkit.data import chat

    calls = []

    def stop(*a, **k):  # pass 1 checks every row, pass 2 reaches its tenth conversation: Ctrl-C
        calls.append(1)
        if len(calls) == len(ROWS) + 10:
            raise KeyboardInterrupt
        return original(*a, **k)

    original = chat.encode_chat
    monkeypatch.setattr(chat, "encode_chat", stop)
    with pytest.raises(KeyboardInterrupt):
        chat.prepare_chat([str(chat_file)], str(tmp_path / "char.model"), tmp_path / "d", fmt=None)
    assert len(calls) == len(ROWS) + 10 and sorted(p.name for p in (tmp_path / "d").iterdir()) == []
