"""CPU decoding through oneDNN: nn.Linear layers swapped for packed ones laid out for the few rows of a decode step.
"""

from __future__ import annotations

import torch


class PackedLinear(torch.nn.Module):
    """An inference-only nn.Linear for the CPU: the weight held in oneDNN's blocked layout for a given number of rows
    (`rows`, a hint: any number works), applied by oneDNN's inner product (torch.ops.mkldnn._linear_pointwise, the
    kernel torch.compile's CPU backend puts in frozen graphs). Same values, same math; no gradients, no .to():
    built by for_cpu_decoding."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 1) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # plain attributes, not parameters or buffers: state_dict and .to() can't take an mkldnn tensor
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def for_cpu_decoding(model, rows: int = 1):
    """Swap every nn.Linear of an inference-only fp32 model on a CPU for a PackedLinear laid out for steps of `rows`
    rows (oneDNN's kernel, the same values); return the model. Elsewhere (CUDA, MPS, bf16, a torch build without
    oneDNN or these ops) nothing changes.

    Why: torch's CPU matmul (MKL sgemm on nn.Linear's (out, in) weight) is slow at the few rows of a decode step, and
    oneDNN on its own layout is not, at every row count from 1 to a 512-token prefill (the figures, from
    bench/generate.py: docs/generation.md). The tied head gets its own copy (the embedding keeps the dense one: +V x C
    floats). Not for a model that trains or moves afterwards (the packed weights are not parameters), nor for a decode
    step compiled with torch.compile (leave the model as it is there).

    Example: for_cpu_decoding(nn.Sequential(nn.Linear(2, 3)))[0] is a PackedLinear(in_features=2, out_features=3)."""
    p = next(model.parameters(), None)
    if p is None or p.device.type != "cpu" or p.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return model
    swaps = [(module, name, child) for module in model.modules() for name, child in module.named_children()
             if isinstance(child, torch.nn.Linear)]
    try:
        packed = [PackedLinear(child, rows) for _, _, child in swaps]
    except (AttributeError, RuntimeError, NotImplementedError):  # a torch build without these oneDNN ops: as it is
        return model
    for (module, name, _), new in zip(swaps, packed):
        setattr(module, name, new)
    return model
