"""The PyTorch backend of a training run, from one CPU to many GPUs (torchrun + DDP or FSDP2): `train(cfg)`.

TorchBackend is gptkit.training.backend.Backend in PyTorch: AdamW with weight decay on 2-D weights only, or Muon for the
block matrices beside it (gptkit.torch.optim), each at its own peak under the Run's schedule; gradient clipping,
accumulation over the micro-batches the Run hands it, autocast (bf16, or fp16 + GradScaler on CUDA), TF32 on CUDA,
optional torch.compile of the training step only, activation checkpointing, DDP or FSDP2 (`parallel`; the sharding is
gptkit.torch.fsdp's), and the optimizer/RNG state that makes a resumed run continue with the identical loss sequence.
A sharded run gathers its weights and optimizer state into the same checkpoint as one process's, tensor by tensor.
The loop itself (schedule, evaluation, checkpoints, metrics, Ctrl-C) is gptkit.training.run.Run's.

Not here: the model (gptkit.torch.model), batches (gptkit.data.loaders), the file format (gptkit.training.checkpoint),
device rules (gptkit.torch.runtime).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import torch

from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.torch.generate import generate
from gptkit.torch.model import build_model
from gptkit.torch.optim import Muon, clip_grad_norm_, configure_optimizers
from gptkit.torch.runtime import (autocast, init_distributed, peak_flops, pick_device, pick_dtype, released,
                                  setup_threads, teardown_distributed)
from gptkit.torch.weights import load_weights, model_tensors
from gptkit.training.backend import EVAL_TOKENS, Backend, Batch, joined
from gptkit.training.run import TrainResult, train_with


class TorchBackend(Backend):
    """A GPT and its optimizers (AdamW, or AdamW + Muon: gptkit.torch.optim) in PyTorch, on one process or as a
    DDP or FSDP2 rank."""

    name = "torch"

    def setup(self, t: TrainConfig) -> None:
        device = pick_device(t.device)
        self.dtype = pick_dtype(t.dtype, device)
        self.dist, self.device = init_distributed(device)
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.parallel = t.parallel if self.dist.enabled else "one"
        self.sharded = self.parallel == "fsdp"
        if self.sharded and self.dtype == torch.float16:
            raise ValueError("parallel='fsdp' trains in bfloat16 or float32 (fp16's GradScaler is not sharded here); "
                             "use --dtype=bfloat16")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (outside autocast) on TF32 tensor cores
            torch.backends.cudnn.allow_tf32 = True
        elif self.device.type == "cpu":
            setup_threads(t.threads)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def build(self, model: GPTConfig, t: TrainConfig, init: dict[str, np.ndarray] | None, source: str) -> None:
        self.model = build_model(model, attention_for(self.device, self.dtype, model.block_size))
        if init is not None:
            load_weights(self.model, init, source=source)
        self.model = self.model.to(self.device)
        self.model.activation_checkpointing = t.activation_checkpointing
        muon = Muon
        if self.sharded:  # every rank built the same model (same seed): each keeps its rows
            from gptkit.torch import fsdp

            self.model = fsdp.shard_model(self.model, self.device, self.dtype, t.reshard_after_forward)
            muon = fsdp.ShardedMuon
        self.optimizers = configure_optimizers(self.model, t, self.device, self.dtype, muon)  # adamw [+ muon]
        self.optimizer = self.optimizers["adamw"]
        self.peak_lr = {"adamw": t.lr, "muon": t.muon_lr}
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.grad_clip, self.lr = t.grad_clip, t.lr
        self.return_logits = not t.chunked_loss  # only the loss is used; chunked, the logits are never whole
        self.fwd = self._wrap(self.model, t.compile)
        self.averaged = [p.detach().clone() for p in self.model.parameters()] if t.ema_decay else []  # fsdp: shards

    def _wrap(self, model: torch.nn.Module, compile: bool):
        """The callable the training step runs: the model, compiled and/or DDP-wrapped. Evaluation and sampling
        use self.model, so compile never touches them and checkpoints never see `module.`/`_orig_mod.`."""
        fwd = torch.compile(model) if compile else model  # FSDP2: graph breaks at each block's gather
        if self.parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            fwd = DDP(fwd, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None,
                      gradient_as_bucket_view=True)  # the gradients live in DDP's buckets: not held twice
        return fwd

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        """A batch array on the device; from pinned memory on CUDA, so the copy does not wait for the GPU."""
        x = torch.from_numpy(a)
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def train_step(self, step: int, batches: Sequence[Batch], lr: float, weights=None) -> torch.Tensor:
        for name, opt in self.optimizers.items():  # one schedule, each optimizer at its own peak
            for g in opt.param_groups:
                g["lr"] = self.peak_lr[name] * lr / self.lr
        total = torch.zeros((), device=self.device)
        for micro, (x, y) in enumerate(batches):
            if self.parallel == "ddp":  # all-reduce the gradients on the last micro-step only
                self.fwd.require_backward_grad_sync = micro == len(batches) - 1
            elif self.sharded:  # reduce-scatter them on the last micro-step only
                self.model.set_requires_gradient_sync(micro == len(batches) - 1)
            with autocast(self.device, self.dtype):
                _, loss = self.fwd(self._tensor(x), self._tensor(y), return_logits=self.return_logits)
            loss = loss / len(batches)  # the mean over micro-batches, as one big batch would give
            if weights is not None:  # chat data: each micro-batch counts by its assistant tokens
                loss = loss * weights[micro]
            total += loss.detach()
            self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            for opt in self.optimizers.values():
                self.scaler.unscale_(opt)
            clip = clip_grad_norm_ if self.device.type == "cpu" and not self.sharded else torch.nn.utils.clip_grad_norm_
            clip(self.model.parameters(), self.grad_clip)
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        return total

    def to_floats(self, losses: list[torch.Tensor]) -> list[float]:
        values = torch.stack(losses)
        if self.dist.enabled:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.AVG)
            released(values)
        return values.tolist()

    @torch.no_grad()
    def eval_loss(self, batches: Sequence[Batch]) -> float:
        self.model.eval()
        # A join of n batches' mean loss counts n times (training.backend.joined). Sharded, every forward is a
        # collective, and whether chat batches join depends on each rank's data: there every batch goes alone.
        joins = joined(batches, max_tokens=0 if self.sharded else EVAL_TOKENS)
        with autocast(self.device, self.dtype):
            losses = [self.model(self._tensor(x), self._tensor(y), return_logits=self.return_logits)[1] * n
                      for x, y, n in joins]
        self.model.train()
        mean = sum(torch.stack(losses).tolist()) / len(batches)  # one transfer; summed in double, as floats
        if self.dist.enabled:  # every rank decides on the same figure whether to save a best checkpoint
            mean = self.to_floats([torch.tensor(mean, device=self.device)])[0]
        return mean

    @torch.no_grad()
    def sample(self, prompt: list[int], max_new_tokens: int, *, seed: int, temperature: float, top_k: int | None,
               stop_token: int | None) -> list[int]:
        self.model.eval()  # the raw module, never compiled: a sample must not cost a compile
        try:
            with autocast(self.device, self.dtype):  # sharded, every rank runs every step (each gathers weights)
                ids = generate(self.model, prompt, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                               stop_token=None if self.sharded else stop_token)
            return ids[: ids.index(stop_token)] if self.sharded and stop_token in ids else ids  # as generate cuts
        finally:
            self.model.train()  # dropout back on whatever happened (as the MLX backend does)

    def weights(self) -> dict[str, np.ndarray]:
        """Rank 0: the whole model's weights (sharded: gathered tensor by tensor, every rank taking part)."""
        if self.rank and not self.sharded:
            return {}
        from gptkit.torch.fsdp import full  # a plain tensor as it is

        return model_tensors(self.model, full, keep=self.rank == 0)

    def load_weights(self, tensors: dict[str, np.ndarray], source: str) -> None:
        from gptkit.torch.fsdp import shard_like  # a plain parameter takes the tensor as it is

        load_weights(self.model, tensors, source, place=shard_like)

    def _parameters(self) -> list[torch.Tensor]:
        """The parameters the average follows, in its order (fsdp: this rank's shards, resharded after a forward)."""
        if self.sharded:
            from gptkit.torch.fsdp import sharded_parameters

            return sharded_parameters(self.model)
        return list(self.model.parameters())

    @torch.no_grad()
    def average(self, decay: float) -> None:
        torch._foreach_lerp_(self.averaged, self._parameters(), 1 - decay)

    @torch.no_grad()
    def swap_average(self) -> None:
        for p, a in zip(self._parameters(), self.averaged):
            live = p.detach().clone()
            p.detach().copy_(a)
            a.copy_(live)

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """AdamW's `<param index>.<key>` arrays (exp_avg, exp_avg_sq, step) and `param_groups` (the names of
        checkpoints before Muon), Muon's as `muon.<index>.<key>` and `muon_param_groups`, and the GradScaler."""
        if self.rank and not self.sharded:
            return {}, {}
        from gptkit.torch.fsdp import full

        tensors, meta = {}, {"scaler": self.scaler.state_dict()}
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            prefix = "" if name == "adamw" else f"{name}."
            for i, st in sd["state"].items():
                for k, v in st.items():
                    v = full(v.detach())  # sharded: every rank gathers, rank 0 keeps
                    if self.rank == 0:
                        tensors[f"{prefix}{i}.{k}"] = v.cpu().numpy()
            meta[_groups_key(name)] = sd["param_groups"]
        return tensors, meta

    def load_optimizer_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        from gptkit.torch.fsdp import shard_like

        states = _split_optimizer_tensors(tensors)
        for name, opt in self.optimizers.items():
            params = [p for g in opt.param_groups for p in g["params"]]  # state_dict's indices
            state = {i: {k: torch.from_numpy(np.array(v)) for k, v in st.items()}
                     for i, st in states.get(name, {}).items()}
            for i, st in state.items():  # parameter-shaped tensors cut as the parameter is (sharded); scalars as saved
                st.update({k: shard_like(t, params[i]) for k, t in st.items() if t.shape == params[i].shape})
            opt.load_state_dict({"state": state, "param_groups": meta[_groups_key(name)]})
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])

    def state_bytes(self) -> dict[str, int]:
        """The bytes of weights, gradients and optimizer state this rank holds now (gptkit.torch.fsdp.rank_bytes)."""
        from gptkit.torch.fsdp import rank_bytes

        held = rank_bytes(self.model, self.optimizers.values())
        return {**held, "weights": held["weights"] * (2 if self.averaged else 1)}  # ema_decay: the average too

    def rng_state(self) -> dict[str, np.ndarray]:
        state = {"torch_rng": torch.get_rng_state().numpy()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device).numpy()
        return state

    def load_rng_state(self, tensors: dict[str, np.ndarray]) -> None:
        torch.set_rng_state(torch.from_numpy(np.array(tensors["torch_rng"])))
        if self.device.type == "cuda" and "cuda_rng" in tensors:
            torch.cuda.set_rng_state(torch.from_numpy(np.array(tensors["cuda_rng"])), self.device)

    # -- distributed ------------------------------------------------------------------------------

    def gather(self, obj) -> list | None:
        if not self.dist.enabled:
            return [obj]
        # torch.distributed.gather_object's own tensors could not be waited for (see released)
        data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(self.device)
        size = torch.tensor([data.numel()], device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        torch.distributed.all_gather(sizes, size)
        released(size, *sizes)
        padded = torch.zeros(max(int(n) for n in sizes), dtype=torch.uint8, device=self.device)
        padded[: data.numel()] = data
        parts = [torch.empty_like(padded) for _ in sizes] if self.dist.is_main else None
        torch.distributed.gather(padded, parts, dst=0)
        released(padded, *(parts or []))
        if parts is None:
            return None
        return [pickle.loads(p[: int(n)].cpu().numpy().tobytes()) for p, n in zip(parts, sizes)]

    def total(self, count: int) -> int:
        if not self.dist.enabled:
            return count
        t = torch.tensor([count], device=self.device)
        torch.distributed.all_reduce(t)
        released(t)
        return int(t.item())

    def agree(self, code: int) -> int:
        if not self.dist.enabled:
            return code
        flag = torch.tensor([code], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        released(flag)
        return int(flag.item())

    def barrier(self) -> None:
        """An all_reduce, not torch.distributed.barrier: gloo's barrier holds the collectives still in flight when it
        starts, and drops them after it wakes this rank, where `released` cannot wait for them."""
        if self.dist.enabled:
            t = torch.zeros(1, device=self.device)
            torch.distributed.all_reduce(t)
            released(t)

    def peak_flops(self, configured: float) -> float | None:
        return peak_flops(self.device, self.dtype, configured)

    def flops_per_token(self, seq_len: int) -> float:
        return self.model.flops_per_token(seq_len)

    def close(self) -> None:
        teardown_distributed()


def attention_for(device: torch.device, dtype: torch.dtype, block_size: int) -> str:
    """The model's attention path for training: SDPA, except on a CPU at short contexts, where torch's CPU
    flash-attention backward is the slow part of attention and the explicit softmax(q k^T) v is faster (fwd + bwd:
    in bf16 2x; in fp32 by the written-out backward of gptkit.torch.model.CausalAttention, up to 1.6x; past 128
    positions flash wins; figures in docs/training.md). Both paths compute the same attention (tests hold them
    equal)."""
    if device.type == "cpu" and block_size <= 128:
        return "explicit"
    return "sdpa"


def _groups_key(optimizer: str) -> str:
    return "param_groups" if optimizer == "adamw" else f"{optimizer}_param_groups"


def _split_optimizer_tensors(tensors: dict) -> dict[str, dict[int, dict]]:
    """Checkpoint names -> optimizer -> param index -> state key.

    Example: {"0.exp_avg": a, "muon.2.momentum_buffer": b} -> {"adamw": {0: {"exp_avg": a}},
    "muon": {2: {"momentum_buffer": b}}}
    """
    out: dict[str, dict[int, dict]] = {}
    for k, v in tensors.items():
        head, rest = k.split(".", 1)
        name, (i, key) = ("adamw", (head, rest)) if head.isdigit() else (head, rest.split(".", 1))
        out.setdefault(name, {}).setdefault(int(i), {})[key] = v
    return out


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or, with resume=True, continue) the run `cfg` describes with PyTorch; returns what happened.
    A fresh run refuses a run dir that already holds a run unless overwrite=True."""
    return train_with(TorchBackend(), cfg, resume=resume, overwrite=overwrite)
