"""The checkpoint file format, and nothing else: one safetensors file, written atomically (temp file + rename).
numpy + safetensors, no torch (the MLX backend shares it).

Tensors `model.<name>` are the unwrapped model's weights in fp32 (lm_head.weight left out when tied to wte);
`optim.<i>.<key>` the optimizer state; `rank<r>.<key>` each rank's RNG state. The safetensors header metadata key
"gptkit" holds a JSON object: format, version, step, model config, loader states, optimizer param groups, and the
run's counters. Which files of a run dir hold checkpoints, and everything else in it: gptkit.training.run_dir.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from gptkit.files import atomic_write_bytes
from gptkit.hf.tensors import DTYPES, read_header

FORMAT = "gptkit-checkpoint"


VERSION = 1


META_KEY = "gptkit"


FIX = "copy it again, or use the run's other checkpoint (best or last)"  # what to do about a broken file


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write tensors and a JSON-able meta dict as one safetensors file, atomically."""
    from safetensors.numpy import save

    header = {"format": FORMAT, "version": VERSION, **meta}
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata={META_KEY: json.dumps(header)}))


def read_checkpoint(path: str | os.PathLike, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
    """Tensors whose names start with `prefix` (prefix removed) and the meta dict of a checkpoint file. A file that is
    not one, whatever its bytes, is a one-line ValueError naming it (the header is checked by gptkit.hf.tensors'
    reader before the safetensors library reads the tensors)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    with open(path, "rb") as f:
        _, header_meta, _ = read_header(f, path, dtypes=tuple(DTYPES), fix=FIX)
    try:
        meta = json.loads(header_meta.get(META_KEY, "{}"))
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path}: not a readable checkpoint: its {META_KEY!r} metadata is not JSON; {FIX}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file, but not a gptkit checkpoint")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {meta.get('version')}, this gptkit reads {VERSION}")
    try:
        with safe_open(path, framework="numpy") as f:
            tensors = {name: f.get_tensor(key) for name, key in strip_prefix(prefix, {k: k for k in f.keys()}).items()}
    except SafetensorError as e:  # the file changed since its header was checked
        raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}; {FIX}") from None
    return tensors, meta


def strip_prefix(prefix: str, tensors: dict) -> dict:
    """The entries whose names start with prefix, without it.

    Example: ("model.", {"model.wte.weight": a, "optim.0.exp_avg": b}) -> {"wte.weight": a}
    """
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_tensor_shapes(want: dict[str, tuple], tensors: dict[str, np.ndarray], source: str) -> None:
    """Raise ValueError unless `tensors` has exactly the names of `want`, each with its shape (both backends' check
    before loading weights into a model)."""
    missing, extra = sorted(want.keys() - tensors.keys()), sorted(tensors.keys() - want.keys())
    if missing or extra:
        raise ValueError(f"{source} does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}; "
                         "it was saved from another model config")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise ValueError(f"{source}: tensor {k} has shape {tuple(tensors[k].shape)}, the model needs "
                             f"{tuple(shape)}; it was saved from another model config")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step a checkpoint file was written at, from its header alone (no tensor is read); None when the file is
    not a readable gptkit checkpoint."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
    except (OSError, SafetensorError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    step = meta.get("step") if isinstance(meta, dict) and meta.get("format") == FORMAT else None
    return step if isinstance(step, int) else None


def checkpoint_parameters(path: str | os.PathLike, prefix: str = "model.") -> int | None:
    """The model's parameter count in a checkpoint file, from its header alone (the elements of its `prefix` tensors:
    tied weights once, as stored); None when the file is not readable. Example: the default preset's run -> 796,416"""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix))
    except (OSError, SafetensorError):
        return None
