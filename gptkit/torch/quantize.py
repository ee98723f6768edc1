"""Weight-only int8 for decoding (`--quantize int8` of sample, chat and serve): every nn.Linear, the head included,
holds its weight as int8 with one fp32 scale per output row (symmetric: w ~ scale * q, q in [-127, 127]), a quarter
of fp32's bytes, which is what a batch-1 decode step reads.

- On a CPU: torch's int8 weight-only kernel (`torch._weight_int8pack_mm`, the one torch.compile and torchao use for
  this), which takes bf16 activations: the input is rounded to bf16 on the way in, the output comes back in the
  model's dtype. Its time grows with every row, so past KERNEL_ROWS rows (a long prompt's prefill) the weight is
  dequantised for fp32's matmul instead.
- Elsewhere (CUDA, MPS): `x @ (q * scale)` in the activations' dtype (gpt-fast's int8 path), which torch.compile fuses
  into one kernel reading int8; eager, it dequantises the weight on each call.

`prepare_for_decoding` is what the commands call: quantized, or (not quantized, eager, on a CPU) oneDNN's packed
linears (gptkit.torch.cpu). Refused in one line each: another mode than int8, a model too small to gain
(MIN_WEIGHTS), and --compile on a CPU (the int8 kernel runs eagerly there).

Not here: MLX (gptkit.mlx.generate: mlx.nn.quantize), exporting quantized weights (not asked: the GGUF export has
its own q8_0).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MODES = ("int8",)
MIN_WEIGHTS = 2**16  # linear weights (256 KiB in fp32) below which a decode step is all overhead: nothing to gain
# Rows up to which the CPU kernel runs: its time grows with each row, while fp32's matmul on a dequantised weight pays
# the dequantisation once (about 1.2 ns a weight) and then little per row (docs/generation.md has the figures).
KERNEL_ROWS = 64


class Int8Linear(nn.Module):
    """An inference-only nn.Linear with an int8 weight and per-row fp32 scales (buffers: .to() moves them)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127  # (out,): the row's largest weight maps to 127
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16))  # the CPU kernel's dtype
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            flat = x.reshape(-1, self.in_features)
            if flat.size(0) <= KERNEL_ROWS:  # bf16 activations: the kernel's fp32 path is several times slower
                out = torch._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), self.weight, self.scale_bf16)
            else:  # a long prefill: the weight dequantised once, then fp32's matmul
                out = flat.float() @ (self.weight.float() * self.scale[:, None]).T  # (bf16 activations too)
            out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        else:
            out = F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize(model: nn.Module, mode: str = "int8") -> nn.Module:
    """Swap every nn.Linear of an inference-only model for an Int8Linear (a tied head gets its own int8 copy; the
    embedding stays as it is); return the model. ValueError for another mode, or a model too small to gain."""
    if mode not in MODES:
        raise ValueError(f"--quantize {mode!r} is not supported; use --quantize int8 (weight-only, per-channel)")
    swaps = [(module, name, child) for module in model.modules() for name, child in module.named_children()
             if isinstance(child, nn.Linear)]
    weights = sum(child.weight.numel() for _, _, child in swaps)
    if weights < MIN_WEIGHTS:
        raise ValueError(f"--quantize int8: this model's linear layers hold {weights:,} weights, fewer than "
                         f"{MIN_WEIGHTS:,}: decoding it is not bound by reading them, so int8 has nothing to gain; "
                         "drop --quantize")
    for module, name, child in swaps:
        setattr(module, name, Int8Linear(child))
    return model


def prepare_for_decoding(model: nn.Module, rows: int, compile, quantize_mode: str | None) -> nn.Module:
    """The model as the decode commands run it: int8 (quantize_mode), else on a CPU without compile oneDNN's packed
    linears laid out for `rows` rows (gptkit.torch.cpu.for_cpu_decoding). `compile` is the commands' flag (True,
    False or "auto")."""
    from gptkit.torch.cpu import for_cpu_decoding

    if quantize_mode is None:
        return model if compile is True else for_cpu_decoding(model, rows)
    check_compile(quantize_mode, compile, next(model.parameters()).device)
    return quantize(model, quantize_mode)


def check_compile(quantize_mode: str | None, compile, device: torch.device) -> None:
    """--quantize with --compile yes on a CPU: a ValueError (the CPU kernel runs eagerly)."""
    if quantize_mode and compile is True and device.type == "cpu":
        raise ValueError(f"--quantize {quantize_mode} runs torch's int8 kernel eagerly on a CPU; drop --compile yes")
