"""Torch models <-> checkpoint tensors: weights out as fp32 numpy, weights in with every name and shape
checked, and models from anywhere: `from_pretrained(spec)` / `load_model(spec)` for a run dir, a HF GPT-2 / Llama /
Qwen3 folder or a GPT-2 name ("gpt2" ... "gpt2-xl").

The checkpoint file format itself lives in gptkit.training.checkpoint (no torch); this module is its torch side, and the
model's entry point to files and hubs, so that gptkit.torch.model itself does no I/O.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from gptkit.torch.model import build_model
from gptkit.training.checkpoint import check_tensor_shapes
from gptkit.training.source import ModelSource, read_model_source

TIED = "lm_head.weight"


def _unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without lm_head.weight when it is wte.weight (tied), so no tensor is stored twice."""
    state = model.state_dict()
    if model.config.arch == "gpt" and model.config.tie_weights:
        state.pop(TIED, None)
    return state


def model_tensors(model: torch.nn.Module, whole=lambda t: t, keep: bool = True) -> dict[str, np.ndarray]:
    """The weights of an unwrapped model as fp32 numpy arrays, by parameter name. A sharded model: `whole` gathers
    each tensor (gptkit.torch.fsdp.full; every rank calls this), and only a rank with keep=True keeps them."""
    out = {}
    for k, v in _unique_state(model).items():
        v = whole(v.detach())
        if keep:
            out[k] = v.to("cpu", torch.float32).numpy()
    return out


def load_weights(model: torch.nn.Module, tensors: dict[str, np.ndarray], source: str = "the checkpoint",
                 place=lambda t, like: t) -> None:
    """Copy `tensors` into `model`, after checking that the names and shapes are exactly the model's. A sharded
    model: `place(tensor, parameter)` cuts each tensor as its parameter is (gptkit.torch.fsdp.shard_like)."""
    current = _unique_state(model)
    check_tensor_shapes({k: tuple(v.shape) for k, v in current.items()}, tensors, source)
    state = {k: place(torch.from_numpy(np.asarray(v)), current[k]) for k, v in tensors.items()}
    model.load_state_dict(state, strict=False)  # a tied lm_head follows wte


def load_model(spec: str | os.PathLike, which: str = "auto", device: str | torch.device = "cpu",
               attention: str = "sdpa") -> tuple[torch.nn.Module, ModelSource]:
    """(model in eval mode, where it came from) for a run dir (which: last, best, auto = best if any), a HF GPT-2 /
    Llama / Qwen3 folder or a GPT-2 name. The source's tensors are dropped once copied, so the weights are held once."""
    src = read_model_source(spec, which)
    model = build_model(src.config, attention)
    load_weights(model, src.tensors, source=str(src.path))
    src.tensors = {}
    return model.to(device).eval(), src


def from_pretrained(spec: str | os.PathLike, attention: str = "sdpa") -> torch.nn.Module:
    """nanoGPT's `GPT.from_pretrained`, moved here so that the model module does no I/O: OpenAI's GPT-2 by name
    ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl": the HF cache, else downloaded), a Hugging Face GPT-2, Llama or
    Qwen3 folder, or a gptkit run dir (its best checkpoint if it has one). Returned on the CPU, in eval mode.

    Example: `from gptkit import from_pretrained; model = from_pretrained("gpt2")`
    """
    return load_model(spec, attention=attention)[0]
