"""`train(cfg)`: the training loop that real runs need, from one CPU to many GPUs (torchrun + DDP).

AdamW with weight decay on 2-D weights only, linear warmup + cosine decay, gradient clipping, gradient
accumulation from a total batch size in tokens, autocast (bf16, or fp16 + GradScaler on CUDA), optional
torch.compile of the training step only, evaluation on fixed batches, samples at each evaluation, and
checkpoints that make `resume=True` continue with the identical loss sequence (weights, optimizer,
each rank's RNG and data position, counters). Ctrl-C finishes the current step and checkpoints.

Only rank 0 prints and writes. Not here: the model (gptkit.model), batches (gptkit.loaders), the file
format (gptkit.checkpoint), device rules (gptkit.runtime).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from gptkit import checkpoint as ckpt
from gptkit.config import RunConfig, TrainConfig
from gptkit.data import data_tokenizer, load_meta, resolve_data_dir
from gptkit.model import build_model
from gptkit.runtime import (autocast, init_distributed, peak_flops, pick_device, pick_dtype, setup_threads,
                            teardown_distributed)
from gptkit.runs import RunLoop, TrainResult, accumulation_steps, lr_at, run_model_config, start_run_dir, train_batches
from gptkit.runs import TrainingDiverged, resume_config  # noqa: F401 (public names of gptkit.train before runs.py)
from gptkit.sample import stream_text
from gptkit.weights import load_weights, model_tensors


def configure_optimizer(model: torch.nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on tensors with >= 2 dims (matmul weights, embeddings), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused)


class Trainer(RunLoop):
    """One run: set up from a RunConfig (fresh or resumed), then `run()`."""

    BACKEND = "torch"

    def __init__(self, cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> None:
        t = cfg.train
        device = pick_device(t.device)
        self.dtype = pick_dtype(t.dtype, device)
        self.dist, self.device = init_distributed(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (outside autocast) on TF32 tensor cores
            torch.backends.cudnn.allow_tf32 = True
        self.threads = setup_threads(t.threads) if self.device.type == "cpu" else t.threads
        if self.dist.is_main:
            self.data_dir = resolve_data_dir(t.data)
        self._barrier()
        if not self.dist.is_main:
            self.data_dir = resolve_data_dir(t.data)
        meta = load_meta(self.data_dir)
        self.tok = data_tokenizer(self.data_dir)
        self.cfg, init = run_model_config(cfg, self.data_dir, meta, resume)
        self.is_main = self.dist.is_main
        self.run_dir = Path(t.out_dir or f"runs/{cfg.name}")
        self.accum = accumulation_steps(t, cfg.model.block_size, self.dist.world_size)
        self.tokens_per_step = t.batch_size * cfg.model.block_size * self.dist.world_size * self.accum

        torch.manual_seed(t.seed)  # the same init on every rank
        self.model = build_model(self.cfg.model)
        if init is not None:
            load_weights(self.model, init.tensors, source=str(init.path))
            init.tensors = {}
        self.model = self.model.to(self.device)
        self.optimizer = configure_optimizer(self.model, t, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.train_batches = train_batches(self.data_dir, self.cfg, self.dist.rank, self.dist.world_size)
        self._resume_or_start(resume, overwrite, meta)
        if not resume:
            torch.manual_seed(t.seed + self.dist.rank)  # dropout differs per rank
        self.fwd = self._wrap(self.model)
        if self.dist.is_main:
            start_run_dir(self.run_dir, self.cfg, self.data_dir, meta, overwrite)

    def _set_mode(self, train: bool) -> None:
        self.model.train(train)

    def _wrap(self, model: torch.nn.Module):
        """The callable the training step runs: the model, DDP-wrapped and/or compiled. Eval and sampling
        use self.model, so compile never touches them and checkpoints never see `module.`/`_orig_mod.`."""
        fwd = model
        if self.cfg.train.compile:
            fwd = torch.compile(fwd)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            fwd = DDP(fwd, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None)
        return fwd

    def _barrier(self) -> None:
        if self.dist.enabled:
            torch.distributed.barrier()

    # -- checkpoints ------------------------------------------------------------------------------

    def _rank_state(self) -> dict:
        state = {"loader": self.train_batches.state_dict(), "torch_rng": torch.get_rng_state().numpy()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device).numpy()
        return state

    def save(self, name: str) -> None:
        """Write a checkpoint (all ranks must call this: each sends its RNG and loader state to rank 0)."""
        states = [self._rank_state()]
        if self.dist.enabled:
            states = [None] * self.dist.world_size if self.dist.is_main else None
            torch.distributed.gather_object(self._rank_state(), states, dst=0)
        if not self.dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in model_tensors(self.model).items()}
        opt = self.optimizer.state_dict()
        for i, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"optim.{i}.{k}"] = v.detach().cpu().numpy()
        ranks = []
        for r, s in enumerate(states):
            for k in ("torch_rng", "cuda_rng"):
                if k in s:
                    tensors[f"rank{r}.{k}"] = s[k]
            ranks.append({"loader": s["loader"]})
        meta = self._checkpoint_meta(param_groups=opt["param_groups"], scaler=self.scaler.state_dict(), ranks=ranks)
        ckpt.save_checkpoint(self.run_dir / name, tensors, meta)

    def _resume(self) -> None:
        path, tensors, meta = self._read_last_checkpoint()
        if len(meta["ranks"]) != self.dist.world_size:
            raise ValueError(f"{path} was written by {len(meta['ranks'])} process(es); resume with as many "
                             f"(this run has {self.dist.world_size})")
        load_weights(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
        opt_state = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(v))
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        r = self.dist.rank
        self.train_batches.load_state_dict(meta["ranks"][r]["loader"])
        torch.set_rng_state(torch.from_numpy(np.array(tensors[f"rank{r}.torch_rng"])))
        if self.device.type == "cuda" and f"rank{r}.cuda_rng" in tensors:
            torch.cuda.set_rng_state(torch.from_numpy(np.array(tensors[f"rank{r}.cuda_rng"])), self.device)
        self._restore_counters(meta)

    # -- the loop ---------------------------------------------------------------------------------

    def train_step(self) -> float:
        """One optimizer step over `accum` micro-batches; returns the mean loss (over ranks too)."""
        t = self.cfg.train
        lr = lr_at(self.step, t)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            x, y = (torch.from_numpy(a).to(self.device, non_blocking=True) for a in next(self.train_batches))
            if self.dist.enabled:  # all-reduce the gradients on the last micro-step only
                self.fwd.require_backward_grad_sync = micro == self.accum - 1
            with autocast(self.device, self.dtype):
                _, loss = self.fwd(x, y)
            loss = loss / self.accum  # the mean over micro-batches, as one big batch would give
            total += loss.detach()
            self.scaler.scale(loss).backward()
        if self.dist.enabled:
            torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.AVG)
        value = total.item()
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise self._diverged(value)
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return value

    @torch.no_grad()
    def _eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        x, y = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        with autocast(self.device, self.dtype):
            return self.model(x, y)[1].item()

    @torch.no_grad()
    def sample_text(self) -> str:
        t = self.cfg.train
        self.model.eval()
        prompt = self.tok.encode(t.sample_prompt) or [0]
        gen = torch.Generator(self.device).manual_seed(t.seed + self.step)  # never the training RNG
        with autocast(self.device, self.dtype):
            text = "".join(stream_text(self.model, self.tok, prompt, t.sample_tokens, device=self.device,
                                       temperature=0.8, top_k=200, generator=gen))
        self.model.train()
        return t.sample_prompt + text

    # -- hooks of runs.RunLoop ----------------------------------------------------------------------

    def _agree(self, code: float) -> float:
        """Every rank stops at the same step, or the next all-reduce hangs: the largest stop code wins."""
        if self.dist.enabled:
            flag = torch.tensor([code], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            code = flag.item()
        return code

    def _mfu_figures(self) -> tuple[float | None, float]:
        peak = peak_flops(self.device, self.dtype, self.cfg.train.peak_flops) if self.dist.is_main else None
        return peak, self.model.flops_per_token(self.cfg.model.block_size) * self.tokens_per_step


def train(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train (or, with resume=True, continue) the run `cfg` describes; returns what happened.
    A fresh run refuses a run dir that already holds a run unless overwrite=True."""
    try:
        return Trainer(cfg, resume=resume, overwrite=overwrite).run()
    finally:
        teardown_distributed()
