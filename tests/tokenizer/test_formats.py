"""The tokenizer file formats (gptkit.tokenizer.formats): every error names the file and line, the docstring
examples, and the type line choosing the class (gptkit.tokenizer.load)."""

import pytest

from gptkit import CharTokenizer, Tokenizer, load_tokenizer
from gptkit.tokenizer.formats import render_token, vocab_path


@pytest.fixture(scope="module")
def trained(verdict):
    return Tokenizer.train(verdict, 512, "gpt4", ["<|endoftext|>", "<|pad|>"], progress=False)


def test_docstring_examples():
    assert render_token(b"a\n") == "a\\u000a"
    assert vocab_path("tok.model").name == "tok.vocab" and vocab_path("x.vocab").name == "x.vocab.txt"


def test_bpe_load_refuses_another_kind_and_load_tokenizer_takes_any(tmp_path):
    CharTokenizer.train("hello").save(tmp_path / "c.model")
    with pytest.raises(ValueError, match="holds a char tokenizer, not a BPE tokenizer; use gptkit.load_tokenizer"):
        Tokenizer.load(tmp_path / "c.model")
    assert isinstance(load_tokenizer(tmp_path / "c.model"), CharTokenizer)


def _corrupt(tmp_path, trained, edit):
    path = tmp_path / "tok.model"
    trained.save(path)
    lines = path.read_text().split("\n")
    path.write_text("\n".join(edit(lines)))
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda ls: ls[:20], r"tok.model:21: file ends early"),
        (lambda ls: ls[:10] + ["12 banana"] + ls[11:], r"tok.model:11: expected 2 integer"),
        (lambda ls: ls[:9] + ["999 3"] + ls[10:], r"tok.model:10: merge \(999, 3\) refers to a token"),
        (lambda ls: ["gptkit tokenizer v9"] + ls[1:], r"tok.model:1: unsupported version"),
        (lambda ls: ['{"model": "json"}'] + ls[1:], r"tok.model:1: not a gptkit tokenizer file"),
        (lambda ls: ls[:1] + ["type sentencepiece"] + ls[2:], r"tok.model:2: unknown tokenizer type"),
        (lambda ls: ls[:2] + ["pattern [oops"] + ls[3:], r"tok.model:3: bad JSON"),
        (lambda ls: ls + ["extra"], r"tok.model:\d+: unexpected extra lines"),
        (lambda ls: ls[:9] + ls[8:], r"tok.model:\d+: two merges make the same bytes"),
    ],
)
def test_corrupted_file_names_file_and_line(tmp_path, trained, edit, match):
    with pytest.raises(ValueError, match=match):
        load_tokenizer(_corrupt(tmp_path, trained, edit))


def test_foreign_binary_file(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a gptkit tokenizer file"):
        load_tokenizer(tmp_path / "x.bin")


def test_bad_tiktoken_file_names_line(tmp_path):
    (tmp_path / "t.tiktoken").write_text("IQ== 0\nnot base64 at all 1\n")
    with pytest.raises(ValueError, match=r"t.tiktoken:2: not a tiktoken ranks line"):
        Tokenizer.from_tiktoken(tmp_path / "t.tiktoken")
