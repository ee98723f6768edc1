"""gptkit prepare: nanoGPT byte-identity, shards, JSONL, documents, meta.json, atomicity, bad input."""

import json

import numpy as np
import pytest

from gptkit import CharTokenizer
from gptkit.data.prepare import check_tokenizer, choose_dtype, data_tokenizer, load_meta, prepare


def test_char_shakespeare_equals_nanogpt(tmp_path, shakespeare):
    # nanoGPT data/shakespeare_char/prepare.py: chars of the whole text, first 90% / last 10% of the
    # characters, uint16; it reports train 1,003,854 and val 111,540 tokens.
    meta = prepare(["shakespeare"], "char", tmp_path, progress=False, num_workers=2)
    chars = sorted(set(shakespeare))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(shakespeare)
    want_train = np.array([stoi[c] for c in shakespeare[: int(n * 0.9)]], dtype=np.uint16).tobytes()
    want_val = np.array([stoi[c] for c in shakespeare[int(n * 0.9) :]], dtype=np.uint16).tobytes()
    assert (tmp_path / "train.bin").read_bytes() == want_train
    assert (tmp_path / "val.bin").read_bytes() == want_val
    assert meta["splits"]["train"]["tokens"] == 1_003_854 and meta["splits"]["val"]["tokens"] == 111_540
    assert data_tokenizer(tmp_path).encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]


def test_gpt2_shakespeare_equals_tiktoken(tmp_path, shakespeare, tiktoken_gpt2):
    # nanoGPT data/shakespeare/prepare.py: encode_ordinary of each split; train 301,966, val 36,059 tokens
    meta = prepare(["shakespeare"], "gpt2", tmp_path, progress=False, num_workers=2)
    n = len(shakespeare)
    train = np.array(tiktoken_gpt2.encode_ordinary(shakespeare[: int(n * 0.9)]), dtype=np.uint16)
    val = np.array(tiktoken_gpt2.encode_ordinary(shakespeare[int(n * 0.9) :]), dtype=np.uint16)
    assert (tmp_path / "train.bin").read_bytes() == train.tobytes()
    assert (tmp_path / "val.bin").read_bytes() == val.tobytes()
    assert (meta["splits"]["train"]["tokens"], meta["splits"]["val"]["tokens"]) == (301_966, 36_059)
    assert meta["sources"][0]["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def test_small_tasks_and_one_worker_give_the_same_bytes(tmp_path, monkeypatch, shakespeare):
    import gptkit.data.prepare

    prepare(["shakespeare"], "gpt2", tmp_path / "a", progress=False, num_workers=1)
    monkeypatch.setattr(gptkit.data.prepare, "_TASK_CHARS", 10_000)
    import gptkit.files

    real = gptkit.files.iter_text_blocks
    monkeypatch.setattr(gptkit.data.prepare, "iter_text_blocks", lambda p, errors: real(p, errors=errors, block_bytes=7_000))
    prepare(["shakespeare"], "gpt2", tmp_path / "b", progress=False, num_workers=2)
    for f in ("train.bin", "val.bin"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_documents_are_separated_by_endoftext(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.txt").write_text("hello")
    (tmp_path / "docs/b.txt").write_text("world")
    (tmp_path / "docs/skip.md").write_text("not a txt file")
    prepare([str(tmp_path / "docs")], "gpt2", tmp_path / "out", val_fraction=0.0, progress=False)
    ids = np.fromfile(tmp_path / "out/train.bin", dtype=np.uint16).tolist()
    assert ids == [31373, 50256, 6894]  # tiktoken gpt2: "hello" -> 31373, "world" -> 6894


def test_jsonl_and_glob_sources(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello"}) + "\n\n" + json.dumps({"text": " world", "id": 2}) + "\n")
    (tmp_path / "c.txt").write_text("!")
    meta = prepare([str(tmp_path / "a.jsonl"), str(tmp_path / "*.txt")], "gpt2", tmp_path / "out",
                   val_fraction=0.0, progress=False)
    assert np.fromfile(tmp_path / "out/train.bin", dtype=np.uint16).tolist() == [31373, 50256, 995, 50256, 0]
    assert [s["path"].rsplit("/", 1)[1] for s in meta["sources"]] == ["a.jsonl", "c.txt"]


def test_shards(tmp_path, tiktoken_gpt2, verdict):
    (tmp_path / "v.txt").write_text(verdict)
    meta = prepare([str(tmp_path / "v.txt")], "gpt2", tmp_path / "out", shard_tokens=1000, progress=False)
    files = meta["splits"]["train"]["files"]
    assert [f["name"] for f in files][:2] == ["train_000000.bin", "train_000001.bin"]
    assert all(f["tokens"] == 1000 for f in files[:-1]) and 0 < files[-1]["tokens"] <= 1000
    joined = b"".join((tmp_path / "out" / f["name"]).read_bytes() for f in files)
    n = len(verdict)
    assert joined == np.array(tiktoken_gpt2.encode_ordinary(verdict[: int(n * 0.9)]), dtype=np.uint16).tobytes()


def test_uint32_when_vocab_is_large(tmp_path):
    (tmp_path / "t.txt").write_text("hello world")
    meta = prepare([str(tmp_path / "t.txt")], "cl100k_base", tmp_path / "out", val_fraction=0.0, progress=False)
    assert meta["dtype"] == "uint32"
    assert np.fromfile(tmp_path / "out/train.bin", dtype=np.uint32).tolist() == [15339, 1917]  # tiktoken cl100k


def test_interrupted_prepare_leaves_no_complete_looking_dir(tmp_path, monkeypatch):
    import gptkit.data.prepare

    (tmp_path / "t.txt").write_text("hello world " * 1000)
    prepare([str(tmp_path / "t.txt")], "gpt2", tmp_path / "out", progress=False)

    def boom(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(gptkit.data.prepare, "_encode_task", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare([str(tmp_path / "t.txt")], "gpt2", tmp_path / "out", progress=False, num_workers=1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.bin", "val.bin"]  # no temp files
    with pytest.raises(ValueError, match="has no meta.json .*interrupted prepare"):
        load_meta(tmp_path / "out")


# -- bad input ----------------------------------------------------------------------------------------


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file, folder or glob"):
        prepare([str(tmp_path / "nope.txt")], "gpt2", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a named dataset"):
        prepare(["wikipedia"], "gpt2", tmp_path / "out")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="hold no text"):
        prepare([str(tmp_path / "empty.txt")], "gpt2", tmp_path / "out")
    with pytest.raises(ValueError, match="matches no files"):
        prepare([str(tmp_path / "*.nothing")], "gpt2", tmp_path / "out")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="no \\*.txt, \\*.jsonl or \\*.parquet files"):
        prepare([str(tmp_path / "emptydir")], "gpt2", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_jsonl_line_without_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"a.jsonl:2: no string field 'text' \(fields: \['body'\]\); pass --field"):
        prepare([str(tmp_path / "a.jsonl")], "gpt2", tmp_path / "out")
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"b.jsonl:2: not a JSON line"):
        prepare([str(tmp_path / "b.jsonl")], "gpt2", tmp_path / "out")


def test_vocab_does_not_fit_dtype():
    assert choose_dtype(50257) == "uint16" and choose_dtype(65536) == "uint16" and choose_dtype(65537) == "uint32"
    with pytest.raises(ValueError, match="100,277 ids, which do not fit uint16"):
        choose_dtype(100277, "uint16")


def test_bad_val_fraction(tmp_path):
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        prepare(["shakespeare"], "gpt2", tmp_path, val_fraction=1.0)


def test_tokenizer_mismatch(tmp_path, gpt2_tok, cl100k_tok):
    (tmp_path / "t.txt").write_text("hello world")
    prepare([str(tmp_path / "t.txt")], "gpt2", tmp_path / "out", val_fraction=0.0, progress=False)
    check_tokenizer(tmp_path / "out", gpt2_tok)
    with pytest.raises(ValueError, match=r"prepared with tokenizer 'gpt2' \(vocab 50,257\), which differs"):
        check_tokenizer(tmp_path / "out", cl100k_tok, "cl100k_base")
    with pytest.raises(ValueError, match="differs"):
        check_tokenizer(tmp_path / "out", CharTokenizer("helo wrd"))


def test_not_a_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data dir"):
        load_meta(tmp_path / "missing")
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a gptkit data dir"):
        load_meta(tmp_path)
