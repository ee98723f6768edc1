"""The run dir and its checkpoint files. numpy + safetensors, no torch (the MLX backend shares it).

A run dir holds:
- `config.json`: the resolved RunConfig (model + train), written when the run starts.
- `ckpt.safetensors` (the latest) and `best.safetensors` (lowest val loss): one file each, written
  atomically (temp file + rename). Tensors `model.<name>` are the unwrapped model's weights in fp32
  (lm_head.weight left out when tied to wte); `optim.<i>.<key>` the optimizer state; `rank<r>.<key>`
  each rank's RNG state. The safetensors header metadata key "gptkit" holds a JSON object: format,
  version, step, model config, loader states, optimizer param groups, and the run's counters.
- `tokenizer.model` when the data's tokenizer is a file (char, trained BPE); else config.json names it.
- `metrics.jsonl`, `loss.png`: see gptkit.train.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig, RunConfig
from gptkit.files import atomic_write_bytes, atomic_write_text
from gptkit.hf import read_hf
from gptkit.hub import HUB_MODELS, resolve_pretrained
from gptkit.tokenizer_files import TOKENIZER_FILE

FORMAT = "gptkit-checkpoint"
VERSION = 1
CONFIG = "config.json"
LAST, BEST = "ckpt.safetensors", "best.safetensors"
META_KEY = "gptkit"


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write tensors and a JSON-able meta dict as one safetensors file, atomically."""
    from safetensors.numpy import save

    header = {"format": FORMAT, "version": VERSION, **meta}
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata={META_KEY: json.dumps(header)}))


def read_checkpoint(path: str | os.PathLike, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
    """Tensors whose names start with `prefix` (prefix removed) and the meta dict of a checkpoint file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is a safetensors file, but not a gptkit checkpoint")
            if meta.get("version") != VERSION:
                raise ValueError(f"{path}: checkpoint version {meta.get('version')}, this gptkit reads {VERSION}")
            tensors = {name: f.get_tensor(key) for name, key in strip_prefix(prefix, {k: k for k in f.keys()}).items()}
    except (SafetensorError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from None
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


def checkpoint_path(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """The checkpoint file of a run dir ("last", "best", or "auto": best when the run has one), with an error that
    says what is wrong."""
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such run dir; train one with `gptkit train --out_dir={d}`")
    if not (d / CONFIG).is_file():
        raise ValueError(f"{d} is not a gptkit run dir (no {CONFIG}); give the --out_dir of a `gptkit train` run")
    if which == "auto":
        which = "best" if (d / BEST).is_file() else "last"
    name = {"last": LAST, "best": BEST}.get(which)
    if name is None:
        raise ValueError(f"which checkpoint: 'last', 'best' or 'auto', got {which!r}")
    path = d / name
    if not path.is_file():
        other = d / (BEST if name == LAST else LAST)
        hint = (f" (it has {other.name})" if other.is_file() else " (the run wrote no checkpoint yet: start it again "
                f"with `gptkit train ... --out_dir={d} --overwrite`)")
        raise ValueError(f"{d} has no {name}{hint}")
    return path


def read_model_checkpoint(run_dir: str | os.PathLike, which: str = "last") -> tuple[GPTConfig, dict[str, np.ndarray], Path]:
    """The model config and weights (by parameter name) of a run's checkpoint, and the file they came from."""
    path = checkpoint_path(run_dir, which)
    tensors, meta = read_checkpoint(path, prefix="model.")
    return GPTConfig(**meta["model"]), tensors, path


@dataclass
class ModelSource:
    """Weights to sample, evaluate or finetune from: a gptkit run dir, a HF model folder (GPT-2, Llama, Qwen3), or a
    GPT-2 name."""

    config: GPTConfig
    tensors: dict[str, np.ndarray]  # by gptkit parameter name, fp32
    path: Path  # the checkpoint file or HF folder they came from
    tokenizer: dict  # {"spec", "file", "fingerprint"} as a run's config.json records it; file relative to base
    base: Path  # where tokenizer["file"] lives

    def load_tokenizer(self):
        from gptkit.tokenizers import tokenizer_from_record

        t = self.tokenizer
        if not (t["file"] or t["spec"]):
            raise ValueError(f"{self.path}: a HF folder with vocab_size {self.config.vocab_size:,} and no tokenizer "
                             f"gptkit reads; give it a tokenizer.json (byte-level BPE), or use GPT-2's vocabulary "
                             f"({GPT2_VOCAB_SIZE:,} tokens)")
        return tokenizer_from_record(t, self.base)


# A HF GPT-2 folder of this vocabulary has OpenAI's GPT-2 BPE: taken by name (tiktoken's rule, the fingerprint of data
# prepared with -t gpt2), not from its tokenizer.json (HF's rule: the same ids, another fingerprint)
GPT2_VOCAB_SIZE = 50257
HF_TOKENIZER = "tokenizer.json"


def is_run_dir(path: str | os.PathLike) -> bool:
    """A gptkit run dir (config.json with model + train), as opposed to a HF folder (config.json too)."""
    try:
        doc = _read_config_doc(path)
    except ValueError:  # no config.json, or not JSON
        return False
    return isinstance(doc, dict) and "train" in doc and "model" in doc


def read_model_source(spec: str | os.PathLike, which: str = "auto") -> ModelSource:
    """A run dir's checkpoint (which: last, best, or auto = best when the run has one), or a HF GPT-2 / Llama / Qwen3
    folder or GPT-2 name (see gptkit.hub), whose tokenizer is GPT-2's for a GPT-2 of its vocabulary, else the
    folder's tokenizer.json (else load_tokenizer refuses)."""
    if (Path(spec) / CONFIG).is_file():
        _read_config_doc(spec)  # a config.json cut short: an error naming it, a run's or a HF folder's
    if is_run_dir(spec):
        config, tensors, path = read_model_checkpoint(spec, which)
        return ModelSource(config, tensors, path, read_run_tokenizer_info(spec), Path(spec))
    p = Path(spec)
    if p.is_dir() and not (p / CONFIG).is_file():
        raise ValueError(f"{p} is not a gptkit run dir nor a HF model folder (no {CONFIG}); give the --out_dir of a "
                         "`gptkit train` run, a folder with config.json + model.safetensors, or a GPT-2 name")
    if not p.exists() and str(spec) not in HUB_MODELS:
        raise FileNotFoundError(f"{spec}: no such run dir or folder, and not a GPT-2 name ({', '.join(HUB_MODELS)})")
    folder = resolve_pretrained(spec)
    config, tensors = read_hf(folder)
    gpt2 = config.pos == "learned" and config.vocab_size == GPT2_VOCAB_SIZE
    if (Path(folder) / HF_TOKENIZER).is_file() and not gpt2:
        record = {"spec": None, "file": HF_TOKENIZER, "fingerprint": None}
    else:
        record = {"spec": "gpt2" if config.vocab_size == GPT2_VOCAB_SIZE else None, "file": None, "fingerprint": None}
    return ModelSource(config, tensors, folder, record, Path(folder))


def _read_config_doc(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a gptkit run dir (no {CONFIG})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    return RunConfig.from_dict(_read_config_doc(run_dir))


def write_run_config(run_dir: str | os.PathLike, cfg: RunConfig, tokenizer: dict, data: dict | None = None) -> None:
    """config.json: the config, what the run's tokenizer is, and what identifies its data (see run_setup)."""
    doc = {**cfg.to_dict(), "tokenizer": tokenizer, **({"data": data} if data else {})}
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(doc, indent=2) + "\n")


def save_run_tokenizer(run_dir: str | os.PathLike, data_dir: str | os.PathLike, meta: dict) -> dict:
    """Copy a data dir's tokenizer file into the run dir; returns what config.json records about it."""
    t = meta["tokenizer"]
    if t["file"]:
        src = Path(data_dir) / t["file"]
        atomic_write_bytes(Path(run_dir) / TOKENIZER_FILE, src.read_bytes())
        return {"spec": t["spec"], "file": TOKENIZER_FILE, "fingerprint": t["fingerprint"]}
    return {"spec": t["spec"], "file": None, "fingerprint": t["fingerprint"]}


def read_run_tokenizer_info(run_dir: str | os.PathLike) -> dict:
    """What config.json records about the run's tokenizer: spec, file, fingerprint."""
    doc = _read_config_doc(run_dir)
    if not doc.get("tokenizer"):
        raise ValueError(f"{run_dir}: config.json records no tokenizer; is this a gptkit run dir?")
    return doc["tokenizer"]


def read_run_data_info(run_dir: str | os.PathLike) -> dict | None:
    """What config.json records about the run's data (None for a run from before it did)."""
    return _read_config_doc(run_dir).get("data")
