"""CPU decoding through oneDNN: nn.Linear layers swapped for packed ones laid out for the few rows of a decode step,
where those are faster on this machine (timed: packed_is_faster).
"""

from __future__ import annotations

import statistics
import time

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


def for_cpu_decoding(model, rows: int = 1, pack: bool | None = None):
    """Swap every nn.Linear of an inference-only fp32 model on a CPU for a PackedLinear laid out for steps of `rows`
    rows (oneDNN's kernel, the same values) where that is faster on this machine; return the model. `pack`: None
    (the default) swaps when packed_is_faster says so, True always, False never. Elsewhere (CUDA, MPS, bf16, a torch
    build without oneDNN or these ops) nothing changes.

    Why: torch's CPU matmul (MKL's sgemm on nn.Linear's (out, in) weight) is slow at the few rows of a decode step on
    some CPUs (AMD's EPYC: oneDNN on its own layout was faster at every row count from 1 to a 512-token prefill) and
    not on others (an Intel Xeon: faster than oneDNN at 1 row, slower at 8), and on a small model whose weights stay
    in cache it wins at any count (oneDNN's call costs more); so the choice is measured (the figures, from
    bench/generate.py: docs/generation.md). The tied head gets its own copy (the embedding keeps the dense one: +V x C
    floats). Not for a model that trains or moves afterwards (the packed weights are not parameters), nor for a decode
    step compiled with torch.compile (leave the model as it is there).

    Example: for_cpu_decoding(nn.Sequential(nn.Linear(2, 3)), pack=True)[0] is a PackedLinear(in_features=2,
    out_features=3)."""
    p = next(model.parameters(), None)
    if (pack is False or p is None or p.device.type != "cpu" or p.dtype != torch.float32
            or not torch.backends.mkldnn.is_available()):
        return model
    swaps = [(module, name, child) for module in model.modules() for name, child in module.named_children()
             if isinstance(child, torch.nn.Linear)]
    try:
        packed = [PackedLinear(child, rows) for _, _, child in swaps]
        if pack is None and not packed_is_faster([child for _, _, child in swaps], packed, rows):
            return model
    except (AttributeError, RuntimeError, NotImplementedError):  # a torch build without these oneDNN ops: as it is
        return model
    for (module, name, _), new in zip(swaps, packed):
        setattr(module, name, new)
    return model


@torch.no_grad()
def packed_is_faster(plain: list, packed: list, rows: int, rounds: int = 3) -> bool:
    """Whether the layers `packed` run a decode step's linears faster than `plain`: a pass applies each layer once,
    in order, to `rows` rows (as a step reads every weight once: from memory for a large model, from cache for a small
    one); the median of `rounds` passes each, alternating, after an untimed pass each (for GPT-2 124M, a fraction of
    a second in all)."""
    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in plain}
    times: dict[bool, list[float]] = {False: [], True: []}
    for k in range(rounds + 1):
        for use_packed in (True, False) if k % 2 else (False, True):
            start = time.perf_counter()
            for m in packed if use_packed else plain:
                m(inputs[m.in_features])
            if k:
                times[use_packed].append(time.perf_counter() - start)
    return statistics.median(times[True]) < statistics.median(times[False])
