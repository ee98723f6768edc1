"""Rows of whole conversations (issue 24's BOS-aligned packing): every row starts a conversation, conversations that
fit are never split, a longer one is cropped, padding and the user's tokens are not targets, ranks take disjoint
rows, and the state resumes at the identical next batch."""

import json

import numpy as np
import pytest

from gptkit import CharTokenizer
from gptkit.cli import main
from gptkit.data.packing import PackedRows, conversation_starts


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory, shakespeare):
    tmp = tmp_path_factory.mktemp("pack")
    CharTokenizer.train(shakespeare).save(tmp / "char.model")
    rows = [{"prompt": "Say " + "a" * k, "completion": "b" * (k % 7 + 1)} for k in range(60)]
    (tmp / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["prepare", "--chat", str(tmp / "c.jsonl"), "-t", str(tmp / "char.model"), "-o", str(tmp / "d")]) == 0
    return tmp / "d"


IM_START_ID = 65  # after tiny Shakespeare's 65 characters
USER = 59  # "u" of "<|im_start|>user": where a conversation opens (its assistant turn opens with "a")


def test_rows_start_at_conversations_and_never_split_one_that_fits(chat_dir):
    tokens = np.fromfile(chat_dir / "train.bin", dtype=np.uint16).astype(np.int64)
    starts = conversation_starts(chat_dir, "train")
    conversations = {tuple(tokens[a:b]) for a, b in zip(starts, [*starts[1:], len(tokens)])}
    assert max(map(len, conversations)) < 97  # every conversation fits a row of 97 tokens here
    loader = PackedRows(chat_dir, "train", 4, 96, seed=0)
    pieces = 0
    for _ in range(6):
        x, y = next(loader)
        for row in x:
            assert row[0] == IM_START_ID  # every row opens a conversation
            opens = [i for i in np.flatnonzero(row == IM_START_ID) if i + 1 < len(row) and row[i + 1] == USER]
            for a, b in zip(opens, [*opens[1:], len(row)]):
                piece = tuple(row[a:b])  # a whole conversation (then padding), or the one x's end cuts
                assert any(piece[: len(c)] == c or (b == len(row) and c[: len(piece)] == piece) for c in conversations)
            pieces += len(opens)
    assert pieces > 24  # several conversations a row


def test_padding_and_the_users_tokens_are_not_targets(chat_dir):
    """The user says "Say aaa...", the assistant "bbb...": the only targets are b and <|im_end|> (id 66)."""
    from gptkit.tokenizer.load import load_tokenizer

    tok = load_tokenizer(chat_dir / "tokenizer.model")
    x, y = next(PackedRows(chat_dir, "train", 8, 96, seed=1))
    assert set(np.unique(y[y != -1]).tolist()) == {tok.encode("b")[0], 66}
    assert (y[:, -5:] == -1).any()  # rows end in padding, which is no target


def test_ranks_take_disjoint_rows_and_the_state_resumes_exactly(chat_dir):
    one = PackedRows(chat_dir, "train", 4, 96, seed=2)
    r0, r1 = PackedRows(chat_dir, "train", 2, 96, seed=2, rank=0, world_size=2), \
        PackedRows(chat_dir, "train", 2, 96, seed=2, rank=1, world_size=2)
    for _ in range(5):  # several epochs of the 54 training conversations
        x, _ = next(one)
        a, _ = next(r0)
        b, _ = next(r1)
        assert (np.concatenate([a[:1], b[:1], a[1:], b[1:]]) == x).all()
    state = one.state_dict()
    want = [next(one)[0] for _ in range(3)]
    again = PackedRows(chat_dir, "train", 4, 96, seed=2)
    again.load_state_dict(state)
    assert all((next(again)[0] == w).all() for w in want)
