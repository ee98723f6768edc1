"""The files of a Hugging Face model folder: safetensors read and written by hand (so that bfloat16, the dtype of
most released Llama / Qwen3 weights, works with numpy alone), one file or shards with `model.safetensors.index.json`,
and a legacy `pytorch_model.bin`.

The safetensors layout (huggingface/safetensors, "Format"): 8 bytes little-endian header length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the raw little-endian data,
offsets relative to the end of the header. Every tensor comes back as fp32 numpy; a file cut short or a header that
does not add up is a one-line ValueError naming the file (read_header: the checks, which gptkit's checkpoint reader
runs too).

Not here: what the tensors mean (gptkit.hf.arch's tables). numpy only; torch only to read a pytorch_model.bin.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from gptkit.files import atomic_writer

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
          "BOOL": np.bool_}  # as numpy reads them; BF16 is widened by hand
READ_DTYPES = (*DTYPES, "BF16")
# Bytes per value of every dtype the format names (huggingface/safetensors' Dtype), read by gptkit or not
ITEMSIZE = {**{k: np.dtype(v).itemsize for k, v in DTYPES.items()}, "BF16": 2, "F8_E5M2": 1, "F8_E4M3": 1,
            "F8_E8M0": 1}
MAX_HEADER = 100_000_000  # bytes: the reference reader's limit
SINGLE, INDEX, LEGACY = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
WRITE_DTYPES = ("float32", "bfloat16", "float16")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32. Example: uint16 0x3F80 -> 1.0, 0xC000 -> -2.0"""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounded to nearest even (as torch's .to(torch.bfloat16)).

    Example: 1.0 -> 0x3F80; 1.00390625 (halfway between two bf16 values) -> 0x3F80 (the even one)
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as fp32 (bf16 and fp16 widened), by name. The file is mapped, not read:
    only the fp32 copies take memory (the map goes when the last view of it does; views may outlive an error)."""
    path = Path(path)
    with open(path, "rb") as f:
        entries, _, start = read_header(f, path)
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    body, out = memoryview(data)[start:], {}
    for name, e in entries.items():
        raw = body[e.begin : e.end]
        if e.dtype == "BF16":
            value = bf16_to_f32(np.frombuffer(raw, dtype="<u2"))
        else:
            value = np.frombuffer(raw, dtype=np.dtype(DTYPES[e.dtype]).newbyteorder("<"))
        out[name] = value.astype(np.float32).reshape(e.shape)  # a copy, not a view of the map
    return out


class Entry(NamedTuple):
    """One tensor of a safetensors header: its dtype code, shape, and bytes [begin, end) of the body."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(f: BinaryIO, path: Path, dtypes=READ_DTYPES, fix: str = "download or copy it again"
                ) -> tuple[dict[str, Entry], dict[str, str], int]:
    """The header of the open safetensors file f, checked as the reference reader checks it: (its tensors by name,
    its __metadata__, where the body starts). Each tensor has a dtype in `dtypes`, a shape of whole numbers whose
    size in that dtype is its byte count, and the tensors tile the body, no gap, no overlap. Anything else is a
    one-line ValueError naming the file and ending in `fix`; nothing else escapes, whatever the bytes."""
    bad = f"{path}: not a readable safetensors file (truncated or corrupt?)"
    size = os.fstat(f.fileno()).st_size
    n, header = _header_json(f, size, bad, fix)
    if not isinstance(header, dict):
        raise ValueError(f"{bad}: its header is a JSON {_kind(header)}, not an object of tensors; {fix}")
    meta = header.pop("__metadata__", None)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{bad}: its __metadata__ is not an object of strings; {fix}")
    entries = {name: _entry(name, info, dtypes, path, bad, fix) for name, info in header.items()}
    at, last, body = 0, None, size - 8 - n
    for name, e in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if e.begin < at:
            raise ValueError(f"{bad}: tensors {_brief(last)} and {_brief(name)} overlap (bytes {e.begin:,} to {at:,} "
                             f"of the body); {fix}")
        if e.begin > at:
            raise ValueError(f"{bad}: bytes {at:,} to {e.begin:,} of the body belong to no tensor; {fix}")
        at, last = e.end, name
    if at > body:
        raise ValueError(f"{bad}: tensor {_brief(last)} ends at byte {at:,} of a {body:,}-byte body; {fix}")
    if at < body:
        raise ValueError(f"{bad}: bytes {at:,} to {body:,} of the body belong to no tensor; {fix}")
    return entries, meta, 8 + n


def _header_json(f: BinaryIO, size: int, bad: str, fix: str) -> tuple[int, object]:
    """(the header's length, its JSON) of the file f of `size` bytes."""
    if size < 8:
        raise ValueError(f"{bad}: {size} bytes; {fix}")
    f.seek(0)
    (n,) = struct.unpack("<Q", f.read(8))
    if n > size - 8:
        raise ValueError(f"{bad}: its header length, {n:,} bytes, runs past the end of the {size:,}-byte file; {fix}")
    if n > MAX_HEADER:
        raise ValueError(f"{bad}: its header is {n:,} bytes, past the format's limit of {MAX_HEADER:,}; {fix}")
    try:
        return n, json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{bad}: its header is not JSON; {fix}") from None


def _entry(name: str, info, dtypes, path: Path, bad: str, fix: str) -> Entry:
    """One header entry {"dtype", "shape", "data_offsets"} checked, as an Entry; `bad` begins each error."""
    bad = f"{bad}: tensor {_brief(name)}"
    if not isinstance(info, dict):
        raise ValueError(f"{bad} is a JSON {_kind(info)}, not an object with dtype, shape and data_offsets; {fix}")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in info]
    if missing:
        raise ValueError(f"{bad} has no {' and no '.join(missing)}; {fix}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise ValueError(f"{bad} has dtype {_brief(dtype)}, which is no safetensors dtype; {fix}")
    if dtype not in dtypes:
        raise ValueError(f"{path}: tensor {_brief(name)} has dtype {dtype}, which gptkit does not read (it reads "
                         f"{', '.join(dtypes)})")
    if not isinstance(shape, list) or not all(map(_whole, shape)):
        raise ValueError(f"{bad} has shape {_brief(shape)}, not a list of whole numbers; {fix}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_whole, offsets))
            and offsets[0] <= offsets[1]):
        raise ValueError(f"{bad} has data_offsets {_brief(offsets)}, not [begin, end] with begin <= end; {fix}")
    need = math.prod(shape) * ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != need:
        raise ValueError(f"{bad} has {offsets[1] - offsets[0]:,} bytes, but shape {shape} of {dtype} takes "
                         f"{need:,}; {fix}")
    return Entry(dtype, tuple(shape), offsets[0], offsets[1])


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _kind(x) -> str:
    """The JSON name of a parsed JSON value's type. Example: [1] -> array; 5 -> number; None -> null"""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(x), "number")


def _brief(x, width: int = 60) -> str:
    """A parsed JSON value as JSON on one line, cut to `width`. Example: [1, 2] -> "[1, 2]"; "t" -> '"t"'"""
    try:
        text = json.dumps(x, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = _kind(x)
    return text if len(text) <= width else text[: width - 3] + "..."


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], dtype: str = "float32") -> None:
    """Write fp32 tensors as one safetensors file in `dtype` (float32, bfloat16, float16), atomically."""
    if dtype not in WRITE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(WRITE_DTYPES)}, got {dtype!r}")
    code, layout = {"float32": ("F32", "<f4"), "bfloat16": ("BF16", "<u2"), "float16": ("F16", "<f2")}[dtype]
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        value = np.asarray(tensors[name], dtype=np.float32)
        raw = (f32_to_bf16(value) if dtype == "bfloat16" else value).astype(layout).tobytes()
        header[name] = {"dtype": code, "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned, as the reference writer does
    with atomic_writer(path) as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for raw in blobs:
            f.write(raw)


def read_folder_tensors(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of a HF folder (model.safetensors, the shards its index names, or pytorch_model.bin), fp32."""
    if (folder / SINGLE).is_file():
        return read_safetensors(folder / SINGLE)
    if (folder / INDEX).is_file():
        try:
            weight_map = json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
            raise ValueError(f"{folder / INDEX}: not a safetensors index (no weight_map); download it again") from None
        if not isinstance(weight_map, dict) or not all(isinstance(s, str) and s and Path(s).name == s
                                                       for s in weight_map.values()):
            raise ValueError(f"{folder / INDEX}: its weight_map must map tensor names to shard file names in the "
                             "folder; download it again")
        out = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise ValueError(f"{folder}: shard {shard}, named by {INDEX}, is missing; download it again")
            out.update(read_safetensors(folder / shard))
        missing = sorted(weight_map.keys() - out.keys())
        if missing:
            raise ValueError(f"{folder}: {INDEX} names tensor {missing[0]}, which no shard holds")
        return out
    if (folder / LEGACY).is_file():
        return read_legacy(folder / LEGACY)
    raise ValueError(f"{folder} has no {SINGLE}, {INDEX} or {LEGACY}; is it a HF model folder?")


def read_legacy(path: Path) -> dict[str, np.ndarray]:
    """A pytorch_model.bin's tensors as fp32, unpickled with torch's weights_only loader (tensors and plain data
    only: a pickle can run code). A file it refuses is a one-line ValueError, which, unlike torch's, never advises
    weights_only=False: that is the protection a file from elsewhere needs."""
    import torch

    fix = "download it again, or the model's model.safetensors instead (gptkit reads that first)"
    with open(path, "rb") as f:  # a file gptkit may not open is an OSError of its own
        try:
            with warnings.catch_warnings():  # torch's warnings about such files also point at weights_only=False
                warnings.simplefilter("ignore")
                state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception:  # a zip cut short, random bytes, a pickle of other objects: torch has no one error for them
            raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt, or it holds Python "
                             f"objects besides tensors, which gptkit does not unpickle); {fix}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: a PyTorch file, but not a state dict (tensors by name); {fix}")
    return {str(k): v.to(torch.float32).numpy() for k, v in state.items()}
