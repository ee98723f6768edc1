"""The built-in chat tasks (issue 24): seeded, offline, in tiny Shakespeare's characters, held-out rows on words the
training rows never use, preparable by name; and `gptkit eval --chat` scoring exact match and self-ended replies."""

import json


from gptkit import CharTokenizer
from gptkit.cli import main
from gptkit.data.tasks import HELD_OUT, dialogue_rows, held_out, reverse_rows


def test_reverse_is_seeded_held_out_and_in_shakespeares_characters(shakespeare):
    rows = reverse_rows()
    assert rows == reverse_rows() and len(rows) == 5000
    assert rows[0]["messages"][1]["content"] == rows[0]["messages"][0]["content"].removeprefix("Reverse: ")[::-1]
    train = {r["messages"][0]["content"] for r in rows[: -int(5000 * HELD_OUT)]}
    val = {r["messages"][0]["content"] for r in held_out("reverse")}
    assert len(held_out("reverse")) == 500 and not train & val  # generalisation, not recall
    chars = set(shakespeare)
    assert all(set(m["content"]) <= chars for r in rows for m in r["messages"])
    assert all(m["content"].removeprefix("Reverse: ").islower() for r in rows[:200] for m in r["messages"][:1])


def test_dialogue_pairs_consecutive_speeches():
    rows = dialogue_rows()
    assert rows[0]["messages"] == [{"role": "user", "content": "Before we proceed any further, hear me speak."},
                                   {"role": "assistant", "content": "Speak, speak."}]
    assert len(rows) > 3000


def test_a_task_prepares_by_name_with_its_held_out_rows_as_val(tmp_path, shakespeare):
    CharTokenizer.train(shakespeare).save(tmp_path / "char.model")
    assert main(["prepare", "--chat", "reverse", "-t", str(tmp_path / "char.model"), "-o", str(tmp_path / "d")]) == 0
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["chat"]["conversations"] == {"train": 4500, "val": 500}


def test_replies_score_exact_and_ended_by_themselves(shakespeare):
    from gptkit.torch.evaluate import score_replies

    tok = CharTokenizer.train(shakespeare)
    rows = [{"messages": [{"role": "user", "content": f"Reverse: {w}"}, {"role": "assistant", "content": w[::-1]}]}
            for w in ("hello", "world", "night")]
    outs = [tok.encode("olleh"), tok.encode("dlrow"), tok.encode("thgixx")]  # right and ended; right, cut; wrong
    assert score_replies(tok, rows, outs, [13, 5, 13]) == {"accuracy": 2 / 3, "ended": 2 / 3, "conversations": 3}


def test_gptkit_eval_chat_runs_the_held_out_task_through_the_engine(tmp_path, capsys):
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--eval_iters=1", "--progress=false",
            "--sample_tokens=0"]
    assert main(["train", *tiny, "--max_iters=1", "--eval_interval=1", f"--out_dir={tmp_path / 'base'}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "base"), "--chat", "reverse", "--limit", "4"]) == 1
    assert "has no chat format (a base model)" in capsys.readouterr().err
    assert main(["prepare", "--chat", "reverse", "-t", str(tmp_path / "base"), "-o", str(tmp_path / "d")]) == 0
    assert main(["train", *tiny, "--max_iters=2", "--eval_interval=2", f"--init_from={tmp_path / 'base'}",
                 f"--data={tmp_path / 'd'}", f"--out_dir={tmp_path / 'sft'}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "sft"), "--chat", "reverse", "--limit", "12", "--json"]) == 0
    chat = json.loads(capsys.readouterr().out)["chat"]
    assert chat["conversations"] == 12 and 0 <= chat["accuracy"] <= 1 and 0 <= chat["ended"] <= 1
