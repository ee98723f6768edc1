"""Weights to sample, evaluate or finetune from, wherever they are: a gptkit run dir, a HF model folder (GPT-2, Llama,
Qwen3) or a GPT-2 name.

Numpy only: both backends' weight loaders and the run's --init_from read through here. The run dir's files are
gptkit.training.run_dir's; HF folders are gptkit.hf.arch's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig
from gptkit.hf.arch import config_from_hf, read_hf, read_hf_config
from gptkit.hf.hub import HUB_MODELS, resolve_pretrained
from gptkit.training.checkpoint import checkpoint_step
from gptkit.training.run_dir import (CONFIG, is_run_dir, read_config_doc, read_model_checkpoint, read_run_config,
                                    read_run_tokenizer_info)


@dataclass
class ModelSource:
    """Weights to sample, evaluate or finetune from: a gptkit run dir, a HF model folder (GPT-2, Llama, Qwen3), or a
    GPT-2 name."""

    config: GPTConfig
    tensors: dict[str, np.ndarray]  # by gptkit parameter name, fp32
    path: Path  # the checkpoint file or HF folder they came from
    tokenizer: dict  # {"spec", "file", "fingerprint"} as a run's config.json records it; file relative to base
    base: Path  # where tokenizer["file"] lives
    step: int | None = None  # a run's checkpoint: the step it was written at

    def load_tokenizer(self):
        return load_recorded_tokenizer(self.tokenizer, self.base, self.path, self.config.vocab_size)

    def tokenizer_fingerprint(self) -> str:
        """What identifies the tokenizer (equal exactly when two turn text into the same ids): the fingerprint a
        run recorded, else the loaded tokenizer's."""
        return self.tokenizer["fingerprint"] or self.load_tokenizer().fingerprint()

    def chat_format(self):
        """The chat format the model speaks, or None for a base model (see recorded_chat_format)."""
        return recorded_chat_format(self.tokenizer, self.base, self.load_tokenizer)

    def tokenizer_name(self) -> str:
        """The tokenizer in a few words, for messages. Example: char (fingerprint 1f0c9a2e)"""
        t = self.tokenizer
        return f"{t['spec'] or t['file']} (fingerprint {self.tokenizer_fingerprint()[:8]})"


def recorded_chat_format(record: dict, base: Path, load_tokenizer):
    """The chat format (gptkit.tokenizer.chat.ChatFormat) of a model whose tokenizer `record` describes, or None for
    a base model: what a run finetuned on conversations recorded, an HF folder's own chat template, else ChatML where
    the tokenizer has its two tokens (a run finetuned before runs recorded their format)."""
    from gptkit.tokenizer.chat import IM_END, IM_START, ChatFormat

    if record.get("chat"):
        return ChatFormat.from_record(record["chat"])
    if not is_run_dir(base) and (own := ChatFormat.from_hf_folder(base)):
        return own
    specials = load_tokenizer().special_tokens
    return ChatFormat.chatml() if IM_START in specials and IM_END in specials else None


def source_chat_format(spec: str | os.PathLike):
    """The chat format of a model source, without reading its weights (recorded_chat_format)."""
    if is_run_dir(spec):
        return recorded_chat_format(read_run_tokenizer_info(spec), Path(spec), lambda: source_tokenizer(spec))
    folder = _hf_folder(spec)
    record = _hf_tokenizer_record(folder, config_from_hf(read_hf_config(folder)))
    return recorded_chat_format(record, folder, lambda: source_tokenizer(spec))


def load_recorded_tokenizer(record: dict, base: Path, where, vocab_size: int):
    """The tokenizer a source's record names (see ModelSource.tokenizer), or a ValueError saying how to give one."""
    from gptkit.tokenizer.load import tokenizer_from_record

    if not (record["file"] or record["spec"]):
        raise ValueError(f"{where}: a HF folder with vocab_size {vocab_size:,} and no tokenizer gptkit reads; give it "
                         f"a tokenizer.json (byte-level BPE), or use GPT-2's vocabulary ({GPT2_VOCAB_SIZE:,} tokens)")
    return tokenizer_from_record(record, base)


def source_tokenizer_spec(spec: str | os.PathLike) -> str:
    """The tokenizer of a model source (a run dir, an HF folder or a GPT-2 name) as a CLI spec: the path of the file it
    lives in, or the name of the published encoding (a HF GPT-2 folder's is "gpt2", as read_model_source takes it).
    Example: runs/x -> "runs/x/tokenizer.model"; a GPT-2 folder, or "gpt2-medium" -> "gpt2"."""
    if str(spec) in HUB_MODELS and not Path(spec).exists():
        return "gpt2"  # a GPT-2 name not yet downloaded: GPT-2's tokenizer by definition
    if is_run_dir(spec):
        record, base = read_run_tokenizer_info(spec), Path(spec)
    else:
        base = _hf_folder(spec)
        record = _hf_tokenizer_record(base, config_from_hf(read_hf_config(base)))
    if not (record["file"] or record["spec"]):
        raise ValueError(f"{spec} has no tokenizer gptkit reads (no tokenizer.json, and not GPT-2's vocabulary)")
    return str(base / record["file"]) if record["file"] else record["spec"]


def source_config(spec: str | os.PathLike) -> GPTConfig:
    """The model config of a source, without reading its weights (a GPT-2 name not yet downloaded: its preset)."""
    if is_run_dir(spec):
        return read_run_config(spec).model
    if str(spec) in HUB_MODELS and not Path(spec).exists():
        return GPTConfig.from_preset(str(spec))
    return config_from_hf(read_hf_config(_hf_folder(spec)))


def source_tokenizer(spec: str | os.PathLike):
    """The tokenizer of a model source, without reading its weights (a HF folder's config.json is read, and a GPT-2
    name not yet downloaded is GPT-2's tokenizer by definition)."""
    if is_run_dir(spec):
        return load_recorded_tokenizer(read_run_tokenizer_info(spec), Path(spec), spec, 0)
    if str(spec) in HUB_MODELS and not Path(spec).exists():
        return load_recorded_tokenizer({"spec": "gpt2", "file": None, "fingerprint": None}, Path("."), spec, 0)
    folder = _hf_folder(spec)
    config = config_from_hf(read_hf_config(folder))
    return load_recorded_tokenizer(_hf_tokenizer_record(folder, config), Path(folder), folder, config.vocab_size)


# A HF GPT-2 folder of this vocabulary has OpenAI's GPT-2 BPE: taken by name (tiktoken's rule, the fingerprint of data
# prepared with -t gpt2), not from its tokenizer.json (HF's rule: the same ids, another fingerprint)
GPT2_VOCAB_SIZE = 50257
HF_TOKENIZER = "tokenizer.json"


def read_model_source(spec: str | os.PathLike, which: str = "auto") -> ModelSource:
    """A run dir's checkpoint (which: last, best, or auto = best when the run has one), or a HF GPT-2 / Llama / Qwen3
    folder or GPT-2 name (see gptkit.hf.hub), whose tokenizer is GPT-2's for a GPT-2 of its vocabulary, else the
    folder's tokenizer.json (else load_tokenizer refuses)."""
    if (Path(spec) / CONFIG).is_file():
        read_config_doc(spec)  # a config.json cut short: an error naming it, a run's or a HF folder's
    if is_run_dir(spec):
        config, tensors, path = read_model_checkpoint(spec, which)
        return ModelSource(config, tensors, path, read_run_tokenizer_info(spec), Path(spec), checkpoint_step(path))
    folder = _hf_folder(spec)
    config, tensors = read_hf(folder)
    return ModelSource(config, tensors, folder, _hf_tokenizer_record(folder, config), Path(folder))


def _hf_folder(spec: str | os.PathLike) -> Path:
    """The HF folder of a spec that is not a run dir: the folder itself, or a GPT-2 name's (downloaded if need be)."""
    p = Path(spec)
    if p.is_dir() and not (p / CONFIG).is_file():
        raise ValueError(f"{p} is not a gptkit run dir nor a HF model folder (no {CONFIG}); give the --out_dir of a "
                         "`gptkit train` run, a folder with config.json + model.safetensors, or a GPT-2 name")
    if not p.exists() and str(spec) not in HUB_MODELS:
        raise FileNotFoundError(f"{spec}: no such run dir or folder, and not a GPT-2 name ({', '.join(HUB_MODELS)})")
    return Path(resolve_pretrained(spec))


def _hf_tokenizer_record(folder: Path, config: GPTConfig) -> dict:
    """GPT-2's tokenizer for a GPT-2 of its vocabulary, else the folder's tokenizer.json, else none."""
    gpt2 = config.pos == "learned" and config.vocab_size == GPT2_VOCAB_SIZE
    if (folder / HF_TOKENIZER).is_file() and not gpt2:
        return {"spec": None, "file": HF_TOKENIZER, "fingerprint": None}
    return {"spec": "gpt2" if config.vocab_size == GPT2_VOCAB_SIZE else None, "file": None, "fingerprint": None}
