"""FSDP2 for the PyTorch backend (`parallel = "fsdp"` under torchrun): every rank holds 1/world of each weight, its
gradient and its optimizer state, and gathers a block's weights only while that block runs.

- `shard_model`: torch.distributed.fsdp.fully_shard on each transformer block, then on the root (embeddings, final
  norm, head), over one mesh of all ranks (every node's GPUs alike); in bf16, the blocks' matrices and biases are
  gathered in bf16 (the rounding autocast does) and their gradients reduced in fp32, while the residual stream, the
  norms and the root stay fp32, as under DDP's autocast. Each weight is a DTensor split by rows: rank k holds rows
  [k c, (k + 1) c) for c = ceil(rows / world) (`rows_of`).
- `ShardedMuon`: Muon's update on row shards, equal to one process's. Momentum is elementwise, so it stays sharded
  like AdamW's moments; Newton-Schulz needs the whole matrix, so each matrix has an owner rank (the j-th matrix of
  a shape: rank j % world) that gathers the Nesterov update's rows, orthogonalises all its matrices of that shape
  in one batched Newton-Schulz, and scatters each rank its rows back (the design of nanochat's and torchtitan's
  distributed Muon: the work of the iteration is divided, not repeated).
- `full` / `shard_like`: a DTensor to the whole tensor (a collective: every rank calls it) and back, for gathered
  checkpoints (gptkit.torch.backend): an FSDP run saves the same safetensors file as one process, so sample, eval,
  export and serve read it unchanged, and a resume may change the number of ranks or the layout.
- `rank_bytes`: the bytes this rank holds in weights, gradients and optimizer state (the bench and the tests).

One-process runs call `full` and `shard_like` too (their checkpoints); torch.distributed.tensor is imported only by
a sharded run (`_dtensor`): with sympy and torch.fx it is a noticeable part of a small run's start.

AdamW needs nothing here: torch's AdamW steps DTensor parameters shard by shard, and clip_grad_norm_ reduces the
norm over the ranks.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.distributed as dist

from gptkit.torch.model import RMSNorm
from gptkit.torch.optim import Muon, newton_schulz


def shard_model(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, reshard_after_forward: bool):
    """Shard `model` in place (blocks, then the root) over all ranks; returns it (its class becomes FSDP<class>)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy()
    if dtype == torch.bfloat16:  # the blocks' weights gathered in bf16 (what autocast would cast them to anyway), their
        # inputs left as they come: the residual stream stays fp32, as under DDP; gradients reduced in fp32
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)
    blocks = list(getattr(model, "h", []))
    for i, block in enumerate(blocks):  # the last block's weights are needed again at once by the backward
        reshard = reshard_after_forward and i < len(blocks) - 1
        for norm in [m for m in block.modules() if _is_norm(m)]:  # norms in fp32, as autocast runs them
            fully_shard(norm, mesh=mesh, reshard_after_forward=reshard)
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard)
    # the root (embeddings, final norm, head) in fp32, as under DDP: autocast casts the head for the loss
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


def _is_norm(module: torch.nn.Module) -> bool:
    """A LayerNorm or RMSNorm with weights of its own."""
    return isinstance(module, (torch.nn.LayerNorm, RMSNorm)) and any(True for _ in module.parameters(recurse=False))


def _dtensor(t: torch.Tensor) -> bool:
    """Whether t is a DTensor: none exists before torch.distributed.tensor is imported (shard_model imports it)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (the tensor itself otherwise)."""
    return t.to_local() if _dtensor(t) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor gathered (every rank must call this, in the same order), others as they are."""
    return t.full_tensor() if _dtensor(t) else t


def sharded_parameters(model: torch.nn.Module) -> list[torch.Tensor]:
    """The model's parameters as FSDP2 keeps them between steps: after a forward, the modules that keep their
    gathered weights (reshard_after_forward=False: the last block and the root) are resharded first, so that each
    parameter is this rank's DTensor shard again. A model that is not sharded: its parameters."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()
    return list(model.parameters())


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`whole` laid out as `like` (a DTensor: this rank's rows, cut locally; every rank holds `whole`)."""
    if not _dtensor(like):
        return whole
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole.to(like.dtype), like.device_mesh, like.placements, src_data_rank=None)


def rows_of(rows: int, world: int, rank: int) -> tuple[int, int]:
    """The rows [start, stop) of a `rows`-row matrix that `rank` holds: torch.chunk's split, as FSDP2 cuts.

    Example: rows_of(65, 2, 1) -> (33, 65); rows_of(3, 4, 3) -> (3, 3) (an empty shard)
    """
    c = -(-rows // world)
    return min(rows, rank * c), min(rows, (rank + 1) * c)


def _padded(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x (r, c) with zero rows appended to `rows` rows (collectives need equal shapes on every rank)."""
    out = x.new_zeros(rows, x.size(1))
    out[: x.size(0)] = x
    return out


class ShardedMuon(Muon):
    """Muon (gptkit.torch.optim.Muon) on FSDP2-sharded 2-D weights: the same update, each rank holding its rows.
    The state (momentum_buffer) is sharded as the weight is; see the module docstring for the owners."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for (rows, cols), items in self.updates(group, local).items():  # momentum on this rank's rows
                scale = math.sqrt(max(1.0, rows / cols))
                for (p, _), o in zip(items, self._orthogonalised_rows(rows, items)):
                    shard = local(p)
                    if group["weight_decay"]:
                        shard.mul_(1 - group["lr"] * group["weight_decay"])
                    shard.add_(o[: shard.size(0)], alpha=-group["lr"] * scale)

    def _orthogonalised_rows(self, rows: int, items: list) -> list[torch.Tensor]:
        """For each (weight, update rows) of one shape: this rank's rows of NS(whole update), padded to c rows."""
        world, rank = dist.get_world_size(), dist.get_rank()
        c = -(-rows // world)
        cols = items[0][1].size(1)
        mine = [j for j in range(len(items)) if j % world == rank]
        parts = {j: [items[0][1].new_empty(c, cols) for _ in range(world)] for j in mine}
        pending = [dist.gather(_padded(u, c), parts.get(j), dst=j % world, async_op=True)
                   for j, (_, u) in enumerate(items)]
        for work in pending:
            work.wait()
        scatter: dict[int, list] = {}
        if mine:  # the whole updates this rank owns, orthogonalised together
            whole = torch.stack([torch.cat(parts[j])[:rows] for j in mine])
            for j, o in zip(mine, newton_schulz(whole, dtype=self.ns_dtype)):
                scatter[j] = list(_padded(o, c * world).split(c))
        out = [items[0][1].new_empty(c, cols) for _ in items]
        pending = [dist.scatter(out[j], scatter.get(j), src=j % world, async_op=True) for j in range(len(items))]
        for work in pending:
            work.wait()
        return out


def rank_bytes(model: torch.nn.Module, optimizers) -> dict[str, int]:
    """Bytes of this rank's weights, gradients (those present now) and optimizer state (tied weights once)."""
    size = lambda t: local(t).numel() * local(t).element_size()  # noqa: E731 -- one formula for three sums
    params = list(model.parameters())
    state = [v for opt in optimizers for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    return {"weights": sum(size(p) for p in params),
            "gradients": sum(size(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(size(v) for v in state)}
