"""Hugging Face GPT-2 folders in: config.json + model.safetensors (or pytorch_model.bin) -> a GPTConfig and
weights under gptkit's names, without importing `transformers`.

The name map is one table: HF prefixes every name with `transformer.`, and its Conv1D layers store their
weights as (in, out), the transpose of nn.Linear's (out, in). HF's `attn.bias` / `attn.masked_bias` are
causal-mask buffers, not weights, and are dropped. numpy + safetensors; torch only to read a legacy .bin.

`write_hf_gpt2` goes the other way: a folder that `transformers.GPT2LMHeadModel.from_pretrained` loads.
Not here: names ("gpt2" ... "gpt2-xl"), which gptkit.hub turns into folders (HF cache, gptkit's cache, or a
download) before this module reads them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig
from gptkit.files import atomic_write_bytes, atomic_write_text

# GPTConfig options GPT-2's HF format has no place for: a run exports only with their GPT-2 values
GPT2_LAYOUT = ("pos", "norm", "qk_norm", "mlp", "n_kv_head", "logit_softcap")
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # stored (in, out)
BUFFERS = (".attn.bias", ".attn.masked_bias")  # not ".attn.c_attn.bias", a weight


def gptkit_name(hf_name: str) -> str | None:
    """HF GPT-2 parameter name -> gptkit's; None for mask buffers.

    Example: "transformer.h.3.mlp.c_fc.weight" -> "h.3.mlp.c_fc.weight"; "transformer.h.0.attn.bias" -> None
    """
    name = hf_name.removeprefix("transformer.")
    return None if name.endswith(BUFFERS) else name


def config_from_hf(doc: dict) -> GPTConfig:
    """A GPTConfig from a HF GPT2Config's config.json, refusing what gptkit's GPT does not implement."""
    act = doc.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"activation_function {act!r} is not supported; gptkit's GPT has GELU (tanh or exact)")
    try:
        return GPTConfig(vocab_size=doc["vocab_size"], block_size=doc["n_positions"], n_layer=doc["n_layer"],
                         n_head=doc["n_head"], n_embd=doc["n_embd"], dropout=0.0, bias=True,
                         tie_weights=doc.get("tie_word_embeddings", True), gelu="exact" if act == "gelu" else "tanh",
                         norm_eps=doc.get("layer_norm_epsilon", 1e-5), mlp_hidden=doc.get("n_inner") or 0)
    except KeyError as e:
        raise ValueError(f"config.json has no {e.args[0]!r}; is this a GPT-2 config?") from None


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    st, binary = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(st)
        except SafetensorError as e:
            raise ValueError(f"{st}: not a readable safetensors file (truncated?): {e}") from None
    if binary.is_file():
        import torch

        state = torch.load(binary, map_location="cpu", weights_only=True)
        return {k: v.to(torch.float32).numpy() for k, v in state.items()}
    raise ValueError(f"{folder} has neither model.safetensors nor pytorch_model.bin; is it a HF GPT-2 folder?")


def read_hf_gpt2(folder: str | os.PathLike) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(config, weights by gptkit name, fp32, Conv1D transposed) from a HF GPT-2 folder (a name such as "gpt2"
    becomes a folder in gptkit.hub; gptkit.checkpoint.read_model_source takes either)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; give a HF GPT-2 folder (config.json + model.safetensors)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json; is it a HF GPT-2 folder?")
    config = config_from_hf(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    tensors = {}
    for hf_name, value in _read_tensors(folder).items():
        name = gptkit_name(hf_name)
        if name is None:
            continue
        value = np.asarray(value, dtype=np.float32)
        tensors[name] = np.ascontiguousarray(value.T) if name.endswith(CONV1D) else value
    if config.tie_weights:
        tensors.pop("lm_head.weight", None)  # tied to wte
    return config, tensors


def config_to_hf(config: GPTConfig) -> dict:
    """A GPT2Config's config.json for a gptkit GPT (GPT-2 shapes, GPT-2's LayerNorm epsilon)."""
    if config.arch != "gpt" or not config.bias:
        raise ValueError("only GPT models with biases (GPT-2's layout) export to HF GPT-2; this one has "
                         f"arch={config.arch!r}, bias={config.bias}")
    for name in GPT2_LAYOUT:
        default = GPTConfig.__dataclass_fields__[name].default
        if getattr(config, name) != default:
            raise ValueError(f"HF GPT-2 has no equivalent of model.{name}={getattr(config, name)!r} (GPT-2's is "
                             f"{default!r}); this run cannot be exported as GPT-2")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
        "n_positions": config.block_size, "n_ctx": config.block_size, "n_embd": config.n_embd,
        "n_layer": config.n_layer, "n_head": config.n_head, "layer_norm_epsilon": config.norm_eps,
        "n_inner": config.mlp_hidden or None,  # None: HF's 4 x n_embd, as gptkit's 0; a round trip keeps the config
        "activation_function": "gelu_new" if config.gelu == "tanh" else "gelu",
        "tie_word_embeddings": config.tie_weights, "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout, "bos_token_id": 50256, "eos_token_id": 50256,
    }


def write_hf_gpt2(config: GPTConfig, tensors: dict[str, np.ndarray], folder: str | os.PathLike) -> None:
    """Write gptkit weights (fp32 numpy by gptkit name) as a HF GPT-2 folder; padded vocab rows are cut off."""
    from safetensors.numpy import save

    hf_config = config_to_hf(config)  # refuses a model GPT-2 cannot represent before anything is written
    folder = Path(folder)
    out = {}
    for name, value in tensors.items():
        value = np.asarray(value, dtype=np.float32)
        if name in ("wte.weight", "lm_head.weight"):
            value = value[: config.vocab_size]
        if name.endswith(CONV1D):
            value = value.T
        out[name if name == "lm_head.weight" else "transformer." + name] = np.ascontiguousarray(value)
    if config.tie_weights:
        out.pop("lm_head.weight", None)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "model.safetensors", save(out, metadata={"format": "pt"}))
    atomic_write_text(folder / "config.json", json.dumps(hf_config, indent=2) + "\n")
