"""Atomic writes and streaming text reads (block cuts, UTF-8 errors with byte offsets)."""

import os
from pathlib import Path

import pytest

from gptkit.files import _safe_cut, atomic_write_bytes, iter_text_blocks, read_text


def test_safe_cut_example():
    assert _safe_cut("ab\ncd\n  ef") == 3
    assert _safe_cut("ab \ncd") == -1 and _safe_cut("abc") == -1


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and os.listdir(p.parent) == ["f.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"good")


    with pytest.raises(TypeError):
        atomic_write_bytes(p, object())  # fails inside the write
    assert p.read_bytes() == b"good" and os.listdir(tmp_path) == ["f.bin"]


def test_blocks_concatenate_to_text(tmp_path, taylorswift):
    p = tmp_path / "t.txt"
    p.write_text(taylorswift, encoding="utf-8")
    blocks = list(iter_text_blocks(p, block_bytes=4096))
    assert len(blocks) > 10 and "".join(blocks) == taylorswift


@pytest.mark.parametrize("block_bytes", [3, 7, 1 << 20])
def test_invalid_utf8_names_byte_offset(tmp_path, block_bytes):
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo\n".encode() * 3 + b"ab\xffcd")
    with pytest.raises(ValueError, match=r"bad.txt: not valid UTF-8 at byte offset 23"):
        list(iter_text_blocks(p, block_bytes=block_bytes))
    assert read_text(p, errors="replace").endswith("ab\ufffdcd")


def test_split_character_across_blocks(tmp_path):
    p = tmp_path / "u.txt"
    text = "日本語\nテキスト\n" * 50
    p.write_text(text, encoding="utf-8")
    assert "".join(iter_text_blocks(p, block_bytes=5)) == text


def test_atomic_writer_leaves_nothing_on_failure_and_keeps_the_old_file(tmp_path):
    from gptkit.files import atomic_writer, progress_disabled

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with atomic_writer(target) as f:
        f.write(b"new")
        assert Path(f.name).parent == tmp_path and Path(f.name) != target  # a temp file beside the target
    assert target.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1
    assert (progress_disabled(True), progress_disabled(False), progress_disabled(None)) == (False, True, None)
