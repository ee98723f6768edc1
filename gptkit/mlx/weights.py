"""MLX models <-> checkpoint tensors (gptkit.torch.weights' MLX twin): weights out as fp32 numpy, weights in with every
name and shape checked, and `load_model(spec)` for a run dir, a HF GPT-2 / Llama / Qwen3 folder or a GPT-2 name, so that
gptkit.mlx.model itself does no I/O. Never imports torch.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from gptkit.mlx.model import build_model
from gptkit.training.checkpoint import check_tensor_shapes
from gptkit.training.source import read_model_source


def model_tensors(model: nn.Module) -> dict[str, np.ndarray]:
    """The weights as fp32 numpy arrays by gptkit parameter name (the checkpoint format; a tied lm_head is
    wte and is not stored)."""
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}


def load_weights(model: nn.Module, tensors: dict[str, np.ndarray], source: str = "the checkpoint") -> None:
    """Copy `tensors` into `model` after checking that names and shapes are exactly the model's."""
    want = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    check_tensor_shapes(want, tensors, source)
    model.update(tree_unflatten([(k, mx.array(np.asarray(tensors[k], dtype=np.float32))) for k in want]))
    mx.eval(model.parameters())


def load_model(spec, which: str = "auto"):
    """(model in eval mode, its ModelSource) from a run dir, a HF model folder or a GPT-2 name."""
    src = read_model_source(spec, which)
    model = build_model(src.config)
    load_weights(model, src.tensors, source=str(src.path))
    src.tensors = {}
    model.eval()
    return model, src


def quantize(model: nn.Module, mode: str = "int8", group_size: int = 64) -> nn.Module:
    """`--quantize int8` in MLX: mlx.nn.quantize (8 bits, a scale and bias per group of 64 weights) on every Linear
    and the embedding (whose as_linear is the tied head); layers whose width is not a multiple of the group stay as
    they are. ValueError for another mode, or when nothing can be quantized."""
    if mode != "int8":
        raise ValueError(f"--quantize {mode!r} is not supported; use --quantize int8")

    def fits(path: str, m: nn.Module) -> bool:
        return isinstance(m, (nn.Linear, nn.Embedding)) and m.weight.shape[-1] % group_size == 0

    if not any(fits(k, m) for k, m in model.named_modules()):
        raise ValueError(f"--quantize int8: no layer of this model is {group_size} wide or a multiple of it, so "
                         "nothing can be quantized; drop --quantize")
    nn.quantize(model, group_size=group_size, bits=8, class_predicate=fits)
    return model
