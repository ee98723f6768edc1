"""What a training run will hold per process, before it starts: `gptkit train ... --dry-run` (and bench/memory.py).

`per_rank_bytes(cfg, world, parallel, ...)` counts, for rank 0 (the one holding the most rows):
- weights, gradients and optimizer state from the model's own parameter shapes (built on the meta device: no memory):
  fp32 master weights (twice with ema_decay: their average) and gradients, AdamW's two fp32 moments, Muon's one
  momentum. fsdp keeps ceil(rows / world) rows of each (gptkit.torch.fsdp.rows_of); ddp and one process keep
  everything. With gradient accumulation, FSDP2 also holds the whole unsharded gradients between micro-steps (it
  reduce-scatters on the last one only).
- gathered weights (fsdp): the embeddings and head (fp32), and the blocks being computed (two: the one running and
  the one prefetched; all of them with reshard_after_forward=false), in bf16 when the run is (fp32 otherwise); their
  bf16 copies stand in for the ones autocast would keep for the backward, which the activations then leave out.
- activations: what autograd keeps for the backward of one micro-batch, measured, not modelled: the model is run on
  the CPU at the config's width with 1 and 2 blocks and up to 128 positions, under saved-tensor hooks, and the
  figures are scaled to n_layer blocks and batch_size x block_size tokens (attention memory grows with T beyond
  that only on the explicit path, which training uses at <= 128 positions). Activation checkpointing keeps each
  block's input, plus one block's activations while it is recomputed. CPU autocast keeps a few tensors in other
  dtypes than CUDA's, so on a GPU this is an estimate; allocator slack and temporary buffers are not counted.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import torch

from gptkit.config import RunConfig
from gptkit.torch.fsdp import rows_of
from gptkit.torch.model import build_model
from gptkit.training.backend import takes_muon

PROBES = (32, 64, 128)  # positions of the activation probes: saved bytes are a quadratic in T, fitted through three
PROBE_VOCAB = 64

def per_rank_bytes(cfg: RunConfig, world: int, parallel: str, accum: int, dtype: torch.dtype,
                   attention: str = "sdpa") -> dict[str, int]:
    """{weights, gradients, optimizer, gathered, activations} bytes that rank 0 of `world` processes holds at the
    peak of a step (gathered is 0 unless sharded)."""
    with torch.device("meta"):
        model = build_model(cfg.model)
    fsdp = parallel == "fsdp" and world > 1

    def held(p: torch.Tensor) -> int:  # elements of p on rank 0
        return rows_of(p.shape[0], world, 0)[1] * (p.numel() // p.shape[0]) if fsdp else p.numel()

    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    mine = sum(held(p) for _, p in named)
    muon = sum(held(p) for n, p in named if cfg.train.optimizer == "muon" and takes_muon(n, p.dim()))
    out = {"weights": 4 * mine * (2 if cfg.train.ema_decay else 1),  # ema_decay: their average beside them
           "gradients": 4 * mine + (4 * total if fsdp and accum > 1 else 0),
           "optimizer": 8 * (mine - muon) + 4 * muon, "gathered": 0}
    blocks = list(getattr(model, "h", []))
    per_block = sum(p.numel() for p in blocks[0].parameters()) if blocks else 0
    out["activations"] = activation_bytes(cfg, dtype, attention)
    if fsdp:
        bf16 = dtype == torch.bfloat16  # blocks gathered in bf16 (gptkit.torch.fsdp.shard_model), the root in fp32
        root = total - per_block * len(blocks)
        gathered = min(2, len(blocks)) if cfg.train.reshard_after_forward else len(blocks)
        out["gathered"] = 4 * root + (2 if bf16 else 4) * per_block * gathered
        if bf16 and blocks:  # the bf16 copies of the block matrices autocast keeps for the backward: FSDP2's
            matrices = sum(p.numel() for p in blocks[0].parameters() if p.dim() == 2)  # gathered weights instead
            out["activations"] -= 2 * matrices * (1 if cfg.train.activation_checkpointing else len(blocks))
    return out


@functools.lru_cache(maxsize=64)  # the same run in other layouts (bench/memory.py's table) probes once
def activation_bytes(cfg: RunConfig, dtype: torch.dtype, attention: str = "sdpa") -> int:
    """Bytes autograd keeps for the backward of one micro-batch (batch_size x block_size tokens); see the module
    docstring."""
    m, t = cfg.model, cfg.train
    if m.arch != "gpt":
        return _fit(_probe(m, dtype, False, attention), t.batch_size, m.block_size)
    # The probes use a 64-token vocabulary (a CPU's bf16 matmuls on a 50k-row head take minutes); the head's part is
    # known: the chunked loss keeps its fp32 gradient (V x C, once per micro-batch), the plain loss the logits and
    # their fp32 log-softmax (per token).
    small = replace(m, vocab_size=PROBE_VOCAB, pad_vocab_to=PROBE_VOCAB)
    if t.chunked_loss:
        head = 4 * (m.padded_vocab_size - PROBE_VOCAB) * m.n_embd
    else:
        head = t.batch_size * m.block_size * m.padded_vocab_size * (dtype.itemsize + 4)
    return head + _layers(small, t, dtype, attention)


def _layers(m, t, dtype: torch.dtype, attention: str) -> int:
    one, two = (_probe(replace(m, n_layer=n), dtype, False, attention) for n in (1, 2))
    layer = _minus(two, one)  # one block
    base = _minus(one, layer)  # embeddings, final norm, loss
    if t.activation_checkpointing:
        one_ac, two_ac = (_probe(replace(m, n_layer=n), dtype, True, attention) for n in (1, 2))
        kept = _minus(two_ac, one_ac)  # a checkpointed block keeps its input only, and one block is being recomputed
        per = [tuple(r + k * m.n_layer + f for r, k, f in zip(*x)) for x in zip(base, kept, layer)]
    else:
        per = [tuple(r + f * m.n_layer for r, f in zip(*x)) for x in zip(base, layer)]
    return _fit(per, t.batch_size, m.block_size)


def _minus(a: list[tuple], b: list[tuple]) -> list[tuple]:
    return [tuple(x - y for x, y in zip(p, q)) for p, q in zip(a, b)]


def _fit(saved: list[tuple[int, int]], batch: int, T: int) -> int:
    """Bytes at batch x T from the bytes at the PROBES positions with 1 and 2 rows: each part is a quadratic in T (the
    explicit attention's T x T), fitted through three lengths; the per-row part (the difference of 2 rows and 1) is
    paid `batch` times, the rest (weight casts, rotary tables, the loss's head gradient) once."""
    per_row = [two - one for one, two in saved]
    shared = [one - row for (one, _), row in zip(saved, per_row)]
    return max(0, round(_quadratic(shared, T) + batch * _quadratic(per_row, T)))


def _quadratic(values: list[int], T: int) -> float:
    """The quadratic in t through (PROBES[k], values[k]), at t = T."""
    (t1, t2, t3), (s1, s2, s3) = PROBES, values
    c = ((s3 - s2) / (t3 - t2) - (s2 - s1) / (t2 - t1)) / (t3 - t1)
    b = (s2 - s1) / (t2 - t1) - c * (t1 + t2)
    return s1 + b * (T - t1) + c * (T * T - t1 * t1)


def saved_bytes(model: torch.nn.Module, idx: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward of a training forward of `idx` (B, T) as its own
    targets (parameters, and views of them, left out)."""
    params = {p.data_ptr() for p in model.parameters()}
    seen, total = set(), 0

    def pack(x: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (x.untyped_storage().data_ptr(), x.storage_offset(), tuple(x.shape), x.dtype)
        if key not in seen and x.data_ptr() not in params:
            seen.add(key)
            total += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model(idx, idx, return_logits=False)
    return total


def _probe(model_cfg, dtype: torch.dtype, checkpointing: bool, attention: str) -> list[tuple[int, int]]:
    """Bytes of the distinct tensors autograd saves in a training forward (parameters excluded) of (1 row, 2 rows) of
    each PROBES length."""
    with torch.device("meta"):
        model = build_model(replace(model_cfg, block_size=max(PROBES)), attention)
    model = model.to_empty(device="cpu").train()  # only the shapes of what is saved matter:
    for p in model.parameters():  # zeros, not whatever memory held (denormal floats would take minutes)
        p.detach().zero_()
    model.activation_checkpointing = checkpointing
    def saved(rows: int, T: int) -> int:
        idx = torch.zeros(rows, T, dtype=torch.long)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            return saved_bytes(model, idx)

    return [(saved(1, T), saved(2, T)) for T in PROBES]


def dry_run_report(cfg: RunConfig, world: int) -> str:
    """What `gptkit train ... --dry-run --nproc N` prints: the run's shape and rank 0's bytes, line by line."""
    from gptkit.torch.backend import attention_for
    from gptkit.torch.runtime import DTYPES, pick_dtype
    from gptkit.training.setup import accumulation_steps

    t, m = cfg.train, cfg.model
    kind = "cuda" if t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available()) else "cpu"
    if t.dtype != "auto":
        dtype = DTYPES[t.dtype]
    else:  # CUDA's auto, assumed with bf16 (no GPU need be here); a CPU's, as a run would pick it
        dtype = torch.bfloat16 if kind == "cuda" else pick_dtype("auto", torch.device("cpu"))
    accum = accumulation_steps(t, m.block_size, world)  # a world size that does not divide: its error, here
    parallel = t.parallel if world > 1 else "one"
    b = per_rank_bytes(cfg, world, parallel, accum, dtype, attention_for(torch.device(kind), dtype, m.block_size))
    with torch.device("meta"):
        n = sum(p.numel() for p in build_model(m).parameters())
    share = f"1/{world} of each tensor" if parallel == "fsdp" else "the whole model"
    optim = "AdamW: two fp32 moments" + ("; Muon: one, for the block matrices" if t.optimizer == "muon" else "")
    grads = "fp32" + (", and the whole unsharded gradients between micro-steps" if parallel == "fsdp" and accum > 1
                      else "")
    who = "one process" if world == 1 else f"{world} {parallel} processes"
    average = " and their average (ema_decay)" if t.ema_decay else ""
    rows = [("weights", b["weights"], f"fp32 master weights{average}, {share}"), ("gradients", b["gradients"], grads),
            ("optimizer state", b["optimizer"], optim)]
    if parallel == "fsdp":
        rows.append(("gathered weights", b["gathered"], "embeddings, head and the blocks computing, gathered"))
    ac = " with activation checkpointing" if t.activation_checkpointing else ""
    rows.append(("activations", b["activations"], f"one micro-batch{ac} (measured at this width, scaled)"))
    rows.append(("total", sum(v for _, v, _ in rows), "before allocator slack and temporary buffers"))
    lines = [f"{cfg.name}: {n:,} parameters (vocab_size {m.vocab_size:,}), {who}, {str(dtype)[6:]} on {kind}; "
             f"{t.batch_size} x {m.block_size:,} tokens per micro-step, {accum} micro-step(s) per step",
             "per process (rank 0):"]
    unit, size = ("GiB", 2**30) if rows[-1][1] >= 2**30 else ("MiB", 2**20)
    lines += [f"  {name:17s}{v / size:9.2f} {unit}   {what}" for name, v, what in rows]
    return "\n".join(lines)
