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
from gptkit.hf.arch import read_hf
from gptkit.hf.hub import HUB_MODELS, resolve_pretrained
from gptkit.training.run_dir import CONFIG, is_run_dir, read_config_doc, read_model_checkpoint, read_run_tokenizer_info


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
        from gptkit.tokenizer.load import tokenizer_from_record

        t = self.tokenizer
        if not (t["file"] or t["spec"]):
            raise ValueError(f"{self.path}: a HF folder with vocab_size {self.config.vocab_size:,} and no tokenizer "
                             f"gptkit reads; give it a tokenizer.json (byte-level BPE), or use GPT-2's vocabulary "
                             f"({GPT2_VOCAB_SIZE:,} tokens)")
        return tokenizer_from_record(t, self.base)

    def tokenizer_fingerprint(self) -> str:
        """What identifies the tokenizer (equal exactly when two turn text into the same ids): the fingerprint a
        run recorded, else the loaded tokenizer's."""
        return self.tokenizer["fingerprint"] or self.load_tokenizer().fingerprint()

    def tokenizer_name(self) -> str:
        """The tokenizer in a few words, for messages. Example: char (fingerprint 1f0c9a2e)"""
        t = self.tokenizer
        return f"{t['spec'] or t['file']} (fingerprint {self.tokenizer_fingerprint()[:8]})"


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
