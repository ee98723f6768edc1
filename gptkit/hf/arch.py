"""Hugging Face model folders in and out, one table per architecture: GPT-2 (`GPT2LMHeadModel`), Llama
(`LlamaForCausalLM`) and Qwen3 (`Qwen3ForCausalLM`), without importing `transformers`.

An architecture (`Arch`) is: the GPTConfig options it *is* (Llama: rotary, RMSNorm, SwiGLU), the config.json keys
that carry the other fields, and a tensor table: each gptkit weight, the HF tensors whose rows it concatenates
(gptkit fuses q, k, v into one `c_attn`), their shapes in config terms, and whether HF stores it transposed
(GPT-2's Conv1D keeps (in, out)). Reading and writing, name checks and shape checks all run off that table, so
adding an architecture is one more `Arch`.

What gptkit cannot compute exactly is refused with one line naming it, both ways: in, rope scaling, sliding
windows, another activation, a head with its own width of biases; out, any option no architecture here has
(ReLU^2, logit soft-capping, ...). A bias-free gptkit GPT-2 exports as GPT-2 with zero biases, which is exact.

Not here: the bytes of the files (gptkit.hf.tensors), tokenizer.json (gptkit.tokenizer.hf_json), GPT-2 names such as
"gpt2" (gptkit.hf.hub turns them into folders). numpy only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig
from gptkit.files import atomic_write_text
from gptkit.hf.tensors import read_folder_tensors, write_safetensors

REQUIRED = object()  # a config.json key with no default: its absence is an error


@dataclass(frozen=True)
class Tensor:
    """One gptkit weight: `ours` ({i} = layer) <- the HF tensors `hf`, rows concatenated, each of shape `shapes`
    (letters of `dims`); `conv1d`: HF stores it (in, out); `when`: the GPTConfig flag it exists under."""

    ours: str
    hf: tuple[str, ...]
    shapes: tuple[str, ...]  # "VC" = (vocab_size, n_embd), one string per HF tensor
    conv1d: bool = False
    when: str = ""  # "", "bias", "untied", "qk_norm"; "bias!" = always in HF, zeros when gptkit has none


@dataclass(frozen=True)
class Arch:
    model_type: str
    hf_class: str
    options: dict  # the GPTConfig fields this architecture fixes, e.g. {"pos": "rope"}
    keys: tuple[tuple[str, str, object], ...]  # (GPTConfig field, config.json key, HF's default) copied as is
    tensors: tuple[Tensor, ...]
    read_extra: Callable[[dict], dict]  # config.json -> the other GPTConfig fields, refusing what gptkit lacks
    write_extra: Callable[[GPTConfig], dict]  # GPTConfig -> the other config.json keys
    buffers: tuple[str, ...] = field(default=())  # HF tensor name endings that are not weights


def dims(c: GPTConfig) -> dict[str, int]:
    """The letters of Tensor.shapes. Example (GPT-2 124M): C=768, Q=K=768, A=2304 (q, k, v), H=3072, V=50257"""
    q, k = c.n_head * c.head_size, c.kv_heads * c.head_size
    return {"V": c.vocab_size, "T": c.block_size, "C": c.n_embd, "H": c.hidden_size, "D": c.head_size,
            "Q": q, "K": k, "A": q + 2 * k}


# -- GPT-2 ----------------------------------------------------------------------------------------------------


def _gpt2_read(doc: dict) -> dict:
    act = doc.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"activation_function {act!r} is not supported; gptkit's GPT has GELU (tanh or exact)")
    return {"bias": True, "gelu": "exact" if act == "gelu" else "tanh", "mlp_hidden": doc.get("n_inner") or 0}


def _gpt2_write(c: GPTConfig) -> dict:
    return {"n_ctx": c.block_size, "activation_function": "gelu_new" if c.gelu == "tanh" else "gelu",
            "n_inner": c.mlp_hidden or None,  # None: HF's 4 x n_embd, as gptkit's 0; a round trip keeps the config
            "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout}


def _gpt2_tensors() -> tuple[Tensor, ...]:
    t = "transformer.h.{i}."
    out = [Tensor("wte.weight", ("transformer.wte.weight",), ("VC",)),
           Tensor("wpe.weight", ("transformer.wpe.weight",), ("TC",))]
    for name, shape, conv in (("ln_1.weight", "C", False), ("ln_1.bias", "C", False),
                              ("attn.c_attn.weight", "CA", True), ("attn.c_attn.bias", "A", False),
                              ("attn.c_proj.weight", "CC", True), ("attn.c_proj.bias", "C", False),
                              ("ln_2.weight", "C", False), ("ln_2.bias", "C", False),
                              ("mlp.c_fc.weight", "CH", True), ("mlp.c_fc.bias", "H", False),
                              ("mlp.c_proj.weight", "HC", True), ("mlp.c_proj.bias", "C", False)):
        out.append(Tensor("h.{i}." + name, (t + name,), (shape,), conv, "bias!" if name.endswith("bias") else ""))
    out += [Tensor("ln_f.weight", ("transformer.ln_f.weight",), ("C",)),
            Tensor("ln_f.bias", ("transformer.ln_f.bias",), ("C",), when="bias!"),
            Tensor("lm_head.weight", ("lm_head.weight",), ("VC",), when="untied")]
    return tuple(out)


GPT2 = Arch(
    "gpt2", "GPT2LMHeadModel", {"pos": "learned", "norm": "layernorm", "mlp": "gelu", "qk_norm": False},
    (("vocab_size", "vocab_size", REQUIRED), ("block_size", "n_positions", REQUIRED), ("n_layer", "n_layer", REQUIRED),
     ("n_head", "n_head", REQUIRED), ("n_embd", "n_embd", REQUIRED), ("norm_eps", "layer_norm_epsilon", 1e-5),
     ("tie_weights", "tie_word_embeddings", True)),
    _gpt2_tensors(), _gpt2_read, _gpt2_write, buffers=(".attn.bias", ".attn.masked_bias"))


# -- Llama and Qwen3 ------------------------------------------------------------------------------------------


def _rope_theta(doc: dict) -> float:
    """rope_theta from transformers 5's `rope_parameters` or 4's top-level `rope_theta` + `rope_scaling`; any
    scaling (linear, dynamic, yarn, llama3, ...) is refused: gptkit's rotary has none."""
    params = doc.get("rope_parameters") or {}
    if "full_attention" in params:  # per-layer-type parameters: one kind of layer only, see _llama_read
        params = params["full_attention"]
    scaling = doc.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    kind_old = scaling.get("rope_type", scaling.get("type", "default"))
    for k in (kind, kind_old):
        if k != "default":
            raise ValueError(f"rope scaling {k!r} is not implemented in gptkit (plain rotary only); this model "
                             "cannot be reproduced exactly")
    if params.get("partial_rotary_factor", doc.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial_rotary_factor != 1 (rotary on part of each head) is not implemented in gptkit")
    return float(params.get("rope_theta", doc.get("rope_theta", 10000.0)))


def _llama_read(doc: dict, default_head_dim: int | None = None, mlp_bias: bool = True) -> dict:
    if doc.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {doc['hidden_act']!r} is not supported; gptkit's SwiGLU uses silu")
    if doc.get("use_sliding_window") or any(t != "full_attention" for t in doc.get("layer_types") or ()):
        raise ValueError("sliding-window attention is not implemented in gptkit (full causal attention only)")
    bias = bool(doc.get("attention_bias", False))
    if bias != bool(doc.get("mlp_bias", False) if mlp_bias else False):
        raise ValueError(f"attention_bias={bias} with mlp_bias={not bias}: gptkit's model.bias puts biases in "
                         "attention and MLP alike")
    heads, width = doc.get("num_attention_heads"), doc.get("hidden_size")
    head_dim = doc.get("head_dim") or default_head_dim or (width // heads if heads and width else 0)
    kv = doc.get("num_key_value_heads") or heads
    return {"bias": bias, "rope_theta": _rope_theta(doc), "n_kv_head": 0 if kv == heads else kv,
            "head_dim": 0 if heads and head_dim * heads == width else head_dim}


def _llama_write(c: GPTConfig, qwen3: bool = False) -> dict:
    if c.bias and qwen3:
        raise ValueError("HF Qwen3 has no MLP biases; a run with model.qk_norm=True exports only with bias=False")
    doc = {"hidden_act": "silu", "attention_bias": c.bias, "head_dim": c.head_size,
           "num_key_value_heads": c.kv_heads, "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
           "rope_theta": c.rope_theta, "rope_scaling": None,  # transformers 4's keys (it ignores rope_parameters)
           "attention_dropout": c.dropout, "pretraining_tp": 1}
    if qwen3:
        doc.update(use_sliding_window=False, sliding_window=None, max_window_layers=c.n_layer,
                   layer_types=["full_attention"] * c.n_layer)
        del doc["pretraining_tp"]
    else:
        doc["mlp_bias"] = c.bias
    return doc


def _llama_tensors(qk_norm: bool) -> tuple[Tensor, ...]:
    t = "model.layers.{i}."
    out = [Tensor("wte.weight", ("model.embed_tokens.weight",), ("VC",)),
           Tensor("h.{i}.ln_1.weight", (t + "input_layernorm.weight",), ("C",)),
           Tensor("h.{i}.attn.c_attn.weight", tuple(t + f"self_attn.{x}_proj.weight" for x in "qkv"),
                  ("QC", "KC", "KC")),
           Tensor("h.{i}.attn.c_attn.bias", tuple(t + f"self_attn.{x}_proj.bias" for x in "qkv"), ("Q", "K", "K"),
                  when="bias"),
           Tensor("h.{i}.attn.c_proj.weight", (t + "self_attn.o_proj.weight",), ("CQ",)),
           Tensor("h.{i}.attn.c_proj.bias", (t + "self_attn.o_proj.bias",), ("C",), when="bias"),
           Tensor("h.{i}.ln_2.weight", (t + "post_attention_layernorm.weight",), ("C",))]
    if qk_norm:
        out += [Tensor(f"h.{{i}}.attn.{x}_norm.weight", (t + f"self_attn.{x}_norm.weight",), ("D",)) for x in "qk"]
    mlp = (("c_fc", "up_proj", "HC"), ("c_gate", "gate_proj", "HC"), ("c_proj", "down_proj", "CH"))
    for ours, theirs, shape in mlp:
        out += [Tensor(f"h.{{i}}.mlp.{ours}.weight", (t + f"mlp.{theirs}.weight",), (shape,)),
                Tensor(f"h.{{i}}.mlp.{ours}.bias", (t + f"mlp.{theirs}.bias",), (shape[0],), when="bias")]
    out += [Tensor("ln_f.weight", ("model.norm.weight",), ("C",)),
            Tensor("lm_head.weight", ("lm_head.weight",), ("VC",), when="untied")]
    return tuple(out)


LLAMA_KEYS = (("vocab_size", "vocab_size", REQUIRED), ("block_size", "max_position_embeddings", REQUIRED),
              ("n_layer", "num_hidden_layers", REQUIRED), ("n_head", "num_attention_heads", REQUIRED),
              ("n_embd", "hidden_size", REQUIRED), ("mlp_hidden", "intermediate_size", REQUIRED),
              ("norm_eps", "rms_norm_eps", 1e-6), ("tie_weights", "tie_word_embeddings", False))
LLAMA_OPTIONS = {"pos": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
LLAMA = Arch("llama", "LlamaForCausalLM", {**LLAMA_OPTIONS, "qk_norm": False}, LLAMA_KEYS, _llama_tensors(False),
             _llama_read, _llama_write, buffers=("rotary_emb.inv_freq",))
QWEN3 = Arch("qwen3", "Qwen3ForCausalLM", {**LLAMA_OPTIONS, "qk_norm": True}, LLAMA_KEYS, _llama_tensors(True),
             lambda doc: _llama_read(doc, default_head_dim=128, mlp_bias=False),  # Qwen3Config's head_dim default
             lambda c: _llama_write(c, qwen3=True), buffers=("rotary_emb.inv_freq",))
ARCHS = {a.model_type: a for a in (GPT2, LLAMA, QWEN3)}


# -- config.json both ways ------------------------------------------------------------------------------------


def config_from_hf(doc: dict) -> GPTConfig:
    """A GPTConfig from a HF config.json (GPT-2, Llama or Qwen3), refusing what gptkit's GPT does not compute."""
    arch = ARCHS.get(doc.get("model_type"))
    if arch is None:
        raise ValueError(f"config.json has model_type {doc.get('model_type')!r}; gptkit reads {', '.join(ARCHS)}")
    kw = {}
    for ours, key, default in arch.keys:
        if doc.get(key) is not None:
            kw[ours] = doc[key]
        elif default is REQUIRED:
            raise ValueError(f"config.json has no {key!r}; is this a HF {arch.model_type} config?")
        else:
            kw[ours] = default
    return GPTConfig(**kw, **arch.options, **arch.read_extra(doc), dropout=0.0)


NO_HF_EQUIVALENT = ("logit_softcap",)  # no architecture here has these at all


def arch_for(c: GPTConfig) -> Arch:
    """The HF architecture a gptkit config is exactly: GPT-2 (learned positions), Llama (rotary), Qwen3 (rotary +
    QK-norm); else a ValueError naming the option that has no HF equivalent."""
    if c.arch != "gpt":
        raise ValueError(f"model.arch={c.arch!r} has no HF architecture; only arch='gpt' models export")
    for name in NO_HF_EQUIVALENT:
        if getattr(c, name) != GPTConfig.__dataclass_fields__[name].default:
            raise ValueError(f"no HF architecture has an equivalent of model.{name}={getattr(c, name)!r}; this run "
                             "cannot be exported")
    target = GPT2 if c.pos == "learned" else QWEN3 if c.qk_norm else LLAMA
    wrong = [n for n, v in target.options.items() if getattr(c, n) != v]
    if wrong:
        have = ", ".join(f"model.{n}={getattr(c, n)!r}" for n in wrong)
        need = ", ".join(f"{n}={v!r}" for n, v in target.options.items())
        raise ValueError(f"no HF architecture has model.pos={c.pos!r} with {have}; HF {target.model_type} has "
                         f"{need}: this run cannot be exported")
    if target is GPT2 and (c.kv_heads != c.n_head or c.head_dim):
        name = "n_kv_head" if c.kv_heads != c.n_head else "head_dim"
        raise ValueError(f"HF gpt2 has no equivalent of model.{name}={getattr(c, name)!r}; this run cannot be exported")
    return target


def config_to_hf(c: GPTConfig, eos_token_id: int | None = None) -> dict:
    """The config.json of the HF architecture a gptkit config is (see arch_for), refusing what none represents."""
    arch = arch_for(c)
    doc = {"architectures": [arch.hf_class], "model_type": arch.model_type}
    doc.update({key: getattr(c, ours) for ours, key, _ in arch.keys})
    if "intermediate_size" in doc:
        doc["intermediate_size"] = c.hidden_size  # gptkit's 0 means the default width; HF wants the number
    doc.update(arch.write_extra(c))
    doc.update(bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    return doc


# -- tensors both ways ----------------------------------------------------------------------------------------


def _in_hf(t: Tensor, c: GPTConfig) -> bool:
    return {"": True, "bias!": True, "bias": c.bias, "untied": not c.tie_weights, "qk_norm": c.qk_norm}[t.when]


def _layers(t: Tensor, c: GPTConfig) -> range:
    return range(c.n_layer) if "{i}" in t.ours else range(1)


def tensors_from_hf(arch: Arch, c: GPTConfig, hf: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """HF tensors -> gptkit's, by the table: every expected tensor present with the shape config.json implies, none
    left over (mask buffers and a tied lm_head aside); else a ValueError naming the tensor."""
    root = arch.tensors[0].hf[0].split(".")[0] + "."  # "transformer." / "model."; some folders leave it out
    hf = {k if k.startswith((root, "lm_head.")) else root + k: v for k, v in hf.items()}
    d, out = dims(c), {}
    for t in arch.tensors:
        if not _in_hf(t, c):
            continue
        for i in _layers(t, c):
            parts = []
            for name, shape in zip((n.format(i=i) for n in t.hf), t.shapes):
                want = tuple(d[x] for x in shape)
                if name not in hf:
                    raise ValueError(f"{source}: tensor {name} is missing (config.json says it is there, {want})")
                if tuple(hf[name].shape) != want:
                    raise ValueError(f"{source}: tensor {name} has shape {tuple(hf[name].shape)}; config.json implies "
                                     f"{want}")
                value = hf.pop(name)  # each HF tensor freed once it is in a gptkit one
                parts.append(value.T if t.conv1d else value)
            out[t.ours.format(i=i)] = np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0])
    left = sorted(k for k in hf if not k.endswith(arch.buffers) and not (k == "lm_head.weight" and c.tie_weights))
    if left:
        raise ValueError(f"{source}: tensor {left[0]} has no place in a HF {arch.model_type} model of this config.json "
                         f"({len(left)} such)")
    return out


def tensors_to_hf(arch: Arch, c: GPTConfig, ours: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """gptkit tensors -> HF's, by the table: padded vocabulary rows cut, fused q/k/v split, Conv1D transposed, and
    GPT-2's biases written as zeros for a bias-free run (exact: a missing bias adds nothing)."""
    d, out = dims(c), {}
    for t in arch.tensors:
        if not _in_hf(t, c):
            continue
        shapes = [tuple(d[x] for x in s) for s in t.shapes]
        for i in _layers(t, c):
            name = t.ours.format(i=i)
            if t.when == "bias!" and not c.bias:
                value = np.zeros(shapes[0], np.float32)
            else:
                value = np.asarray(ours[name], np.float32)
                value = value[: c.vocab_size] if name in ("wte.weight", "lm_head.weight") else value
                value = value.T if t.conv1d else value
            rows = np.cumsum([s[0] for s in shapes])[:-1]
            for hf_name, part in zip(t.hf, np.split(value, rows) if len(shapes) > 1 else [value]):
                out[hf_name.format(i=i)] = np.ascontiguousarray(part)
    return out


# -- folders --------------------------------------------------------------------------------------------------


def read_hf_config(folder: str | os.PathLike) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; give a HF model folder (config.json + model.safetensors)")
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no config.json; is it a HF model folder?")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a HF config (a JSON object)")
    return doc


def read_hf(folder: str | os.PathLike) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(config, weights by gptkit name, fp32) from a HF GPT-2, Llama or Qwen3 folder (a name such as "gpt2" becomes
    a folder in gptkit.hf.hub; gptkit.training.source.read_model_source takes either)."""
    folder = Path(folder)
    doc = read_hf_config(folder)
    config = config_from_hf(doc)
    return config, tensors_from_hf(ARCHS[doc["model_type"]], config, read_folder_tensors(folder), str(folder))


def write_hf(config: GPTConfig, tensors: dict[str, np.ndarray], folder: str | os.PathLike, dtype: str = "float32",
             eos_token_id: int | None = None) -> str:
    """Write gptkit weights (fp32 numpy by gptkit name) as the HF folder of their architecture (config.json,
    model.safetensors in `dtype`, generation_config.json); returns the HF class. Refuses before writing anything."""
    doc = config_to_hf(config, eos_token_id)  # refuses a model HF cannot represent before anything is written
    hf = tensors_to_hf(ARCHS[doc["model_type"]], config, tensors)
    doc["dtype"] = dtype
    folder = Path(folder)
    write_safetensors(folder / "model.safetensors", hf, dtype)
    atomic_write_text(folder / "config.json", json.dumps(doc, indent=2) + "\n")
    gen = {"bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "pad_token_id": eos_token_id}
    atomic_write_text(folder / "generation_config.json", json.dumps(gen, indent=2) + "\n")
    return doc["architectures"][0]
