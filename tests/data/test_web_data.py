"""gptkit prepare on a web corpus: parquet shards in FineWeb-Edu's published layout (and the same documents as JSONL)
into fixed-size token shards with the gpt2 tokenizer, checked against tiktoken."""

import json

import numpy as np
import pytest

from gptkit.cli import main
from gptkit.data.prepare import prepare

pa = pytest.importorskip("pyarrow", reason="test dependency: pip install -e '.[dev]' (pyarrow is the web extra)")
import pyarrow.parquet as pq  # noqa: E402


def _fineweb_shard(path, docs, start=0):
    """A parquet file with FineWeb-Edu's columns (huggingface.co/datasets/HuggingFaceFW/fineweb-edu), small row groups."""
    n = len(docs)
    table = pa.table({
        "text": docs, "id": [f"<urn:uuid:{start + i}>" for i in range(n)], "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.org/{start + i}" for i in range(n)], "file_path": ["s3://x"] * n,
        "language": ["en"] * n, "language_score": [0.9] * n, "token_count": [len(d.split()) for d in docs],
        "score": [3.1] * n, "int_score": [3] * n,
    })
    pq.write_table(table, path, row_group_size=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, verdict, taylorswift):
    """Two parquet shards of 'web documents' (paragraphs of the reference texts, some non-ASCII)."""
    tmp = tmp_path_factory.mktemp("web")
    docs = [p for p in (verdict + "\n\n" + taylorswift).split("\n\n") if p.strip()][:120]
    (tmp / "sample" / "10BT").mkdir(parents=True)
    _fineweb_shard(tmp / "sample/10BT/000_00000.parquet", docs[:70])
    _fineweb_shard(tmp / "sample/10BT/001_00000.parquet", docs[70:], start=70)
    return tmp, docs


def test_parquet_folder_into_fixed_size_shards_equals_tiktoken(tmp_path, corpus, tiktoken_gpt2):
    folder, docs = corpus
    meta = prepare([str(folder / "sample/10BT")], "gpt2", tmp_path / "out", val_fraction=0.1, shard_tokens=2000,
                   num_workers=2, progress=False)
    assert [s["path"].rsplit("/", 1)[1] for s in meta["sources"]] == ["000_00000.parquet", "001_00000.parquet"]
    got = []
    for split in ("train", "val"):
        files = meta["splits"][split]["files"]
        assert all(f["tokens"] == 2000 for f in files[:-1])
        got += [np.fromfile(tmp_path / "out" / f["name"], dtype=np.uint16) for f in files]
    # expected: the documents joined by <|endoftext|>, cut at the val character (the document holding the cut is
    # encoded as its two halves), each side encoded by tiktoken
    split_at = meta["characters"]["train"]
    assert split_at == int(sum(map(len, docs)) * 0.9)
    want, pos = {"train": [], "val": []}, 0
    for k, d in enumerate(docs):
        if k:
            want["train" if pos < split_at else "val"].append(50256)
        if pos < split_at < pos + len(d):
            want["train"] += tiktoken_gpt2.encode_ordinary(d[: split_at - pos])
            want["val"] += tiktoken_gpt2.encode_ordinary(d[split_at - pos:])
        else:
            want["train" if pos < split_at else "val"] += tiktoken_gpt2.encode_ordinary(d)
        pos += len(d)
    assert np.concatenate(got).tolist() == want["train"] + want["val"]
    assert meta["splits"]["train"]["tokens"] == len(want["train"])


def test_parquet_and_jsonl_of_the_same_documents_give_the_same_tokens(tmp_path, corpus):
    folder, docs = corpus
    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "id": 1}) + "\n")
    a = prepare([str(folder / "sample/10BT/*.parquet")], "gpt2", tmp_path / "pq", progress=False, num_workers=1)
    b = prepare([str(tmp_path / "docs.jsonl")], "gpt2", tmp_path / "js", progress=False, num_workers=1)
    for split in ("train", "val"):
        assert (tmp_path / "pq" / f"{split}.bin").read_bytes() == (tmp_path / "js" / f"{split}.bin").read_bytes()
    assert a["characters"] == b["characters"]


def test_cli_prepare_web_shards_with_a_count_suffix(tmp_path, corpus, capsys):
    folder, _ = corpus
    rc = main(["prepare", str(folder / "sample/10BT"), "-t", "gpt2", "-o", str(tmp_path / "out"), "--shard-tokens",
               "3k", "--val-fraction", "0.05", "-q"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["splits"]["train"]["files"][0] == {"name": "train_000000.bin", "tokens": 3000}


def test_parquet_bad_input(tmp_path):
    pq.write_table(pa.table({"content": ["a", "b"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"a.parquet: no column 'text' \(columns: \['content'\]\); pass --field"):
        prepare([str(tmp_path / "a.parquet")], "gpt2", tmp_path / "out")
    prepare([str(tmp_path / "a.parquet")], "gpt2", tmp_path / "ok", field="content", val_fraction=0.0, progress=False)
    pq.write_table(pa.table({"text": ["a", None, "c"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"b.parquet: row 1 has no 'text' \(null\)"):
        prepare([str(tmp_path / "b.parquet")], "gpt2", tmp_path / "out")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="column 'text' holds int64, not text"):
        prepare([str(tmp_path / "c.parquet")], "gpt2", tmp_path / "out")
    (tmp_path / "d.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="d.parquet: not a readable parquet file"):
        prepare([str(tmp_path / "d.parquet")], "gpt2", tmp_path / "out")
    assert not (tmp_path / "out").exists()
