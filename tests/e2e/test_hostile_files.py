"""Hostile and broken weight files: a safetensors file whose header lies (both of gptkit's readers: a HF folder's
files, read by hand, and a run's checkpoints, read through the safetensors library), a checkpoint without a model
config, and a pytorch_model.bin cut short or of random bytes, through the Python API and `gptkit sample`: one
ValueError line naming the file, exit 1, never a traceback nor advice to unpickle with weights_only=False."""

import json
import os
import shutil
import struct

import pytest
import torch

from gptkit.cli import main
from gptkit.hf.arch import read_hf
from gptkit.hf.tensors import read_safetensors
from gptkit.training import run_dir as rd
from gptkit.training.checkpoint import META_KEY, read_checkpoint

BROKEN = "not a readable safetensors file (truncated or corrupt?)"
F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}  # 2 floats, 8 bytes: the body below


def _t(**change) -> dict:
    return {**F32, **change}


# id: (header (a JSON value, or raw bytes), body, header length to write (None: the header's), words of the error)
HOSTILE = {
    "header-an-array": ([1], b"", None, f"{BROKEN}: its header is a JSON array, not an object of tensors"),
    "entry-empty": ({"t": {}}, b"", None, 'tensor "t" has no dtype and no shape and no data_offsets'),
    "entry-a-number": ({"t": 5}, b"", None, 'tensor "t" is a JSON number, not an object with dtype'),
    "shape-negative": ({"t": _t(shape=[-2])}, bytes(8), None, 'tensor "t" has shape [-2], not a list of whole'),
    "shape-not-a-list": ({"t": _t(shape="2")}, bytes(8), None, 'tensor "t" has shape "2", not a list'),
    "shape-of-floats": ({"t": _t(shape=[2.0])}, bytes(8), None, 'tensor "t" has shape [2.0]'),
    "shape-not-the-bytes": ({"t": _t(shape=[3])}, bytes(8), None, 'tensor "t" has 8 bytes, but shape [3] of F32 '
                                                                  "takes 12"),
    "offsets-one-number": ({"t": _t(data_offsets=[0])}, bytes(8), None, 'tensor "t" has data_offsets [0], not '
                                                                        "[begin, end]"),
    "offsets-backwards": ({"t": _t(data_offsets=[8, 0])}, bytes(8), None, "has data_offsets [8, 0]"),
    "offsets-past-the-file": ({"t": _t(shape=[200], data_offsets=[0, 800])}, bytes(8), None,
                              'tensor "t" ends at byte 800 of a 8-byte body'),
    "offsets-overlapping": ({"t": F32, "u": F32}, bytes(8), None, 'tensors "t" and "u" overlap (bytes 0 to 8'),
    "offsets-leaving-a-gap": ({"t": _t(data_offsets=[8, 16])}, bytes(16), None, "bytes 0 to 8 of the body belong "
                                                                                 "to no tensor"),
    "dtype-unknown": ({"t": _t(dtype="Q7")}, bytes(8), None, 'tensor "t" has dtype "Q7", which is no safetensors '
                                                             "dtype"),
    "dtype-a-list": ({"t": _t(dtype=["F32"])}, bytes(8), None, 'has dtype ["F32"], which is no safetensors dtype'),
    "header-length-2**62": ({"t": F32}, bytes(8), 2**62, "its header length, 4,611,686,018,427,387,904 bytes, runs "
                                                         "past the end of the"),
    "header-not-json": (b"\xff{not json", bytes(8), None, f"{BROKEN}: its header is not JSON"),
    "header-nested-deep": (b"[" * 100_000, b"", None, f"{BROKEN}: its header is not JSON"),
    "metadata-not-strings": ({"__metadata__": {"format": 5}, "t": F32}, bytes(8), None,
                             "its __metadata__ is not an object of strings"),
}
GOOD_META = {"format": "pt", META_KEY: json.dumps({"format": "gptkit-checkpoint", "version": 1})}


def _write(path, header, body, length, metadata=GOOD_META):
    """8-byte little-endian header length, the header, the body: a file that would pass every check but the one its
    case breaks (a dict header gets metadata a checkpoint reader accepts, so that it reads on to the tensors)."""
    if isinstance(header, dict) and "__metadata__" not in header:
        header = {"__metadata__": metadata, **header}
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + body)
    return path


def _one_line_naming(path, message: str, words: str) -> None:
    assert "\n" not in message and message.startswith(str(path)) and words in message, message


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_header_is_one_line_in_both_readers(tmp_path, case):
    header, body, length, words = HOSTILE[case]
    path = _write(tmp_path / "x.safetensors", header, body, length)
    for read in (read_safetensors, read_checkpoint):
        with pytest.raises(ValueError) as e:
            read(path)
        _one_line_naming(path, str(e.value), words)
        if "dtype" not in case and "metadata" not in case:  # the wrong-dtype line says what gptkit reads instead
            assert BROKEN in str(e.value)


def test_a_header_that_adds_up_reads_and_dtypes_gptkit_does_not_read_are_named(tmp_path):
    from gptkit.training.checkpoint import save_checkpoint

    path = _write(tmp_path / "ok.safetensors", {"t": F32, "e": _t(shape=[0, 3], data_offsets=[8, 8])},
                  struct.pack("<2f", 1.5, -2.0), None)
    tensors = read_safetensors(path)
    assert tensors["t"].tolist() == [1.5, -2.0] and tensors["e"].shape == (0, 3)
    assert read_checkpoint(path)[0]["t"].tolist() == [1.5, -2.0]
    save_checkpoint(tmp_path / "c.safetensors", {"model.w": torch.ones(2).numpy()}, {"step": 3})
    assert read_checkpoint(tmp_path / "c.safetensors", "model.")[1]["step"] == 3
    path = _write(tmp_path / "f8.safetensors", {"t": _t(dtype="F8_E4M3", shape=[8])}, bytes(8), None)
    for read, words in ((read_safetensors, "BF16"), (read_checkpoint, "F32")):
        with pytest.raises(ValueError) as e:
            read(path)
        _one_line_naming(path, str(e.value), 'tensor "t" has dtype F8_E4M3, which gptkit does not read (it reads')
        assert words in str(e.value)


@pytest.mark.parametrize("meta", ["[1]", "5", "{not json"])
def test_a_checkpoints_gptkit_metadata_that_is_no_json_object_is_one_line(tmp_path, meta):
    path = _write(tmp_path / "c.safetensors", {"t": F32}, bytes(8), None, metadata={META_KEY: meta})
    with pytest.raises(ValueError, match="not a gptkit checkpoint|metadata is not JSON") as e:
        read_checkpoint(path)
    _one_line_naming(path, str(e.value), "")


@pytest.fixture(scope="module")
def run_and_folder(tmp_path_factory):
    """A tiny char run and its export as a HF GPT-2 folder."""
    root = tmp_path_factory.mktemp("hostile")
    assert main(["train", "shakespeare_char_gpt2", "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16",
                 "--batch_size=2", "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--sample_tokens=0",
                 "--progress=false", "--peak_flops=1e12", f"--out_dir={root / 'run'}"]) == 0
    assert main(["export", str(root / "run"), "-o", str(root / "hf")]) == 0
    return root / "run", root / "hf"


def _sample_fails_with_one_line(capsys, model, path, words) -> None:
    capsys.readouterr()
    assert main(["sample", str(model), "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gptkit: error: {path}: ") and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err and "weights_only" not in err


@pytest.mark.parametrize("case", ["header-an-array", "entry-a-number", "shape-not-the-bytes", "offsets-overlapping",
                                  "dtype-unknown", "header-length-2**62"])
def test_gptkit_sample_of_a_hostile_file_is_one_error_line(tmp_path, capsys, run_and_folder, case):
    header, body, length, words = HOSTILE[case]
    run, folder = (shutil.copytree(p, tmp_path / p.name) for p in run_and_folder)
    assert main(["sample", str(folder), "--max-new-tokens", "2", "--temperature", "0"]) == 0  # a sound copy first
    _write(folder / "model.safetensors", header, body, length)
    _sample_fails_with_one_line(capsys, folder, folder / "model.safetensors", words)
    for name in (rd.BEST, rd.LAST):
        _write(run / name, header, body, length)
    _sample_fails_with_one_line(capsys, run, run / rd.BEST, words)


@pytest.mark.parametrize("model", [None, "nope", {"n_layer": 1, "wings": 2}])
def test_a_checkpoint_without_a_model_config_it_can_read_is_one_line(tmp_path, capsys, run_and_folder, model):
    from gptkit.training.checkpoint import save_checkpoint

    run = shutil.copytree(run_and_folder[0], tmp_path / "run")
    for name in (rd.BEST, rd.LAST):
        save_checkpoint(run / name, {"model.w": torch.zeros(2).numpy()}, {} if model is None else {"model": model})
    _sample_fails_with_one_line(capsys, run, run / rd.BEST, "model config")


def test_a_pytorch_model_bin_cut_short_or_of_random_bytes_is_one_line(tmp_path, capsys, run_and_folder):
    from safetensors.torch import load_file

    folder = shutil.copytree(run_and_folder[1], tmp_path / "hf")
    bin_file = folder / "pytorch_model.bin"
    torch.save(load_file(folder / "model.safetensors"), bin_file)
    (folder / "model.safetensors").unlink()
    want = read_hf(run_and_folder[1])[1]
    assert all((read_hf(folder)[1][k] == v).all() for k, v in want.items())  # the .bin is read when sound
    whole = bin_file.read_bytes()
    for broken in (whole[: len(whole) // 2], os.urandom(len(whole)), b""):
        bin_file.write_bytes(broken)
        with pytest.raises(ValueError) as e:
            read_hf(folder)
        _one_line_naming(bin_file, str(e.value), "not a readable PyTorch checkpoint (truncated or corrupt")
        assert "weights_only" not in str(e.value)
        _sample_fails_with_one_line(capsys, folder, bin_file, "not a readable PyTorch checkpoint")
    torch.save({"weight": [1, 2]}, bin_file)
    with pytest.raises(ValueError, match="a PyTorch file, but not a state dict"):
        read_hf(folder)


@pytest.mark.parametrize("index", ['{"weight_map": ["model.safetensors"]}', '{"weight_map": {"t": 5}}',
                                   '{"weight_map": {"t": "../model.safetensors"}}', '{"weight_map": {"t": ""}}',
                                   '[1]', '{"weight_map": {"t": "/etc/hostname"}}'])
def test_a_hostile_shard_index_is_one_line_and_reads_nothing_outside_the_folder(tmp_path, capsys, run_and_folder,
                                                                                index):
    folder = shutil.copytree(run_and_folder[1], tmp_path / "hf")
    (folder / "model.safetensors").rename(tmp_path / "model.safetensors")  # outside: what ../ would reach
    (folder / "model.safetensors.index.json").write_text(index)
    with pytest.raises(ValueError, match="model.safetensors.index.json: (its weight_map|not a safetensors index)"):
        read_hf(folder)
    _sample_fails_with_one_line(capsys, folder, folder / "model.safetensors.index.json", "download it again")
