"""The files of a Hugging Face model folder: safetensors read and written by hand (so that bfloat16, the dtype of
most released Llama / Qwen3 weights, works with numpy alone), one file or shards with `model.safetensors.index.json`,
and a legacy `pytorch_model.bin`.

The safetensors layout (huggingface/safetensors, "Format"): 8 bytes little-endian header length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the raw little-endian data,
offsets relative to the end of the header. Every tensor comes back as fp32 numpy; a file cut short or a header that
does not add up is a ValueError naming the file.

Not here: what the tensors mean (gptkit.hf.arch's tables). numpy only; torch only to read a pytorch_model.bin.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import numpy as np

from gptkit.files import atomic_writer

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
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
        if os.fstat(f.fileno()).st_size == 0:
            raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupt?): 0 bytes")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return _parse(path, data)


def _parse(path: Path, data) -> dict[str, np.ndarray]:
    bad = f"{path}: not a readable safetensors file (truncated or corrupt?)"
    if len(data) < 8:
        raise ValueError(f"{bad}: {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{bad}: its header is not JSON") from None
    body, out = memoryview(data)[8 + n :], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if end > len(body):
            raise ValueError(f"{bad}: tensor {name} ends at byte {end:,} of a {len(body):,}-byte body")
        raw = body[begin:end]
        if info["dtype"] == "BF16":
            value = bf16_to_f32(np.frombuffer(raw, dtype="<u2"))
        elif info["dtype"] in DTYPES:
            value = np.frombuffer(raw, dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which gptkit does not read")
        if value.size != int(np.prod(info["shape"])):
            raise ValueError(f"{bad}: tensor {name} has {value.size} values for shape {info['shape']}")
        out[name] = value.astype(np.float32).reshape(info["shape"])  # a copy, not a view of the map
    return out


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
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{folder / INDEX}: not a safetensors index (no weight_map)") from None
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
        import torch

        state = torch.load(folder / LEGACY, map_location="cpu", weights_only=True)
        return {k: v.to(torch.float32).numpy() for k, v in state.items()}
    raise ValueError(f"{folder} has no {SINGLE}, {INDEX} or {LEGACY}; is it a HF model folder?")
