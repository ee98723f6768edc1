"""What a run decides before its first step, without a framework: its config on --resume, its model shape and
--init_from weights, gradient accumulation and the learning-rate schedule, its training batches, and the run
dir's checks and files (a fresh run never replaces another; metrics past a resumed checkpoint are dropped).

gptkit.runs.Run calls these in its set-up; nothing here trains. No torch, no mlx.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

from gptkit import checkpoint as ckpt
from gptkit.config import RunConfig, TrainConfig, parse_overrides
from gptkit.data import NAMED_DATA
from gptkit.files import atomic_write_text

METRICS = "metrics.jsonl"
PLOT = "loss.png"
# Fields a resumed run may change; anything else must match the checkpoint's run.
RESUMABLE = {"max_iters", "max_seconds", "eval_interval", "log_interval", "sample_tokens", "sample_prompt",
             "progress", "device", "compile", "chunked_loss", "threads", "peak_flops", "out_dir"}


def lr_at(step: int, t: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, cosine to min_lr, then min_lr.

    Example (lr=1e-3, min_lr=1e-4, warmup_iters=100, decay to 2000): step 0 -> 1e-5, step 99 -> 1e-3,
    step 2000 -> 1e-4.
    """
    decay_iters = t.lr_decay_iters or t.max_iters
    if step < t.warmup_iters:
        return t.lr * (step + 1) / t.warmup_iters
    if step >= decay_iters:
        return t.min_lr
    progress = (step - t.warmup_iters) / max(1, decay_iters - t.warmup_iters)
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (t.lr - t.min_lr)


def accumulation_steps(t: TrainConfig, block_size: int, world_size: int) -> int:
    """Micro-steps per optimizer step so that all ranks together see total_batch_tokens per step."""
    per_micro = t.batch_size * block_size * world_size
    if t.total_batch_tokens == 0:
        return 1
    if t.total_batch_tokens % per_micro:
        raise ValueError(
            f"total_batch_tokens={t.total_batch_tokens:,} is not a multiple of batch_size x block_size x ranks "
            f"= {t.batch_size} x {block_size} x {world_size} = {per_micro:,}; pick a multiple, e.g. "
            f"{max(1, round(t.total_batch_tokens / per_micro)) * per_micro:,}"
        )
    return t.total_batch_tokens // per_micro


def resume_config(run_dir: str | Path, overrides: list[str]) -> RunConfig:
    """The config of a run dir with `--key=value` overrides, refusing changes that break exact resume."""
    saved = ckpt.read_run_config(run_dir)
    model_over, train_over = parse_overrides(overrides)
    bad = sorted(set(model_over) | (set(train_over) - RESUMABLE - {"data"}))  # data: checked by check_run_data
    if bad:
        raise ValueError(f"--resume keeps the run's config; these cannot change: {', '.join(bad)} "
                         f"(may change: {', '.join(sorted(RESUMABLE))}). Start a new --out_dir instead")
    data = train_over.get("data", saved.train.data)
    if "data" not in train_over and data not in NAMED_DATA and not Path(data).is_dir():
        raise ValueError(f"the run's data dir {data} is gone; if it moved, resume with --data=NEW_DIR (accepted when "
                         "its meta.json matches the run's: same tokenizer, same token counts)")
    return replace(saved, train=replace(saved.train, out_dir=str(run_dir), **train_over))


def init_source(spec: str, model_cfg, data_dir, meta: dict) -> ckpt.ModelSource:
    """The weights of --init_from, with the run's model config: the source's shape, this config's dropout, and
    block_size cropped to this config's when smaller (nanoGPT's crop_block_size). Refuses data prepared with
    another tokenizer than the source's."""
    src = ckpt.read_model_source(spec, which="last")
    want = src.tokenizer["fingerprint"] or src.load_tokenizer().fingerprint()
    have = meta["tokenizer"]
    if have["fingerprint"] != want or have["vocab_size"] != src.config.vocab_size:
        raise ValueError(
            f"--init_from {spec} was trained with tokenizer {src.tokenizer['spec']!r} (vocab "
            f"{src.config.vocab_size:,}), but {data_dir} was prepared with {have['spec']!r} (vocab "
            f"{have['vocab_size']:,}); prepare the data with the same tokenizer (`gptkit prepare SOURCE -t "
            f"{src.tokenizer['spec']} -o DIR`), or train from scratch without --init_from")
    block = model_cfg.block_size
    if block > src.config.block_size:
        raise ValueError(f"block_size={block} exceeds the {src.config.block_size} positions of --init_from {spec}; "
                         f"pass --block_size={src.config.block_size} or less")
    if block < src.config.block_size:
        if "wpe.weight" in src.tensors:  # learned positions are cropped; rotary ones have no table
            src.tensors["wpe.weight"] = src.tensors["wpe.weight"][:block]
    src.config = replace(src.config, dropout=model_cfg.dropout, block_size=block)
    return src


def run_model_config(cfg: RunConfig, data_dir, meta: dict, resume: bool) -> tuple[RunConfig, ckpt.ModelSource | None]:
    """(the run's config with its model resolved, the --init_from source or None): the model shape comes from
    init_from when starting fresh from one, else from the config with the data's vocab_size."""
    if cfg.train.init_from and not resume:
        init = init_source(cfg.train.init_from, cfg.model, data_dir, meta)
        return replace(cfg, model=init.config), init
    return replace(cfg, model=replace(cfg.model, vocab_size=meta["tokenizer"]["vocab_size"])), None


def train_batches(data_dir, cfg: RunConfig, rank: int = 0, world_size: int = 1):
    """The training batches of a rank: nanoGPT's random windows (seed + rank) or build-nanogpt's shard strides."""
    from gptkit.loaders import RandomBatches, ShardedLoader

    t, T = cfg.train, cfg.model.block_size
    if t.loader == "sequential":
        return ShardedLoader(data_dir, "train", t.batch_size, T, rank=rank, world_size=world_size)
    return RandomBatches(data_dir, "train", t.batch_size, T, seed=t.seed + rank)


LOCK = ".gptkit.lock"


def lock_run_dir(run_dir: Path):
    """An exclusive OS lock on the run dir (creating it), held while the returned file stays open and released
    when the process dies however it dies; a second training into the same dir fails at once naming the holder."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ValueError(f"{run_dir} is in use by a training run (pid {holder}); wait for it to end, stop it, or pick "
                         "another --out_dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    remove_stale_temps(run_dir)
    return f


def check_splits(data_dir, cfg: RunConfig) -> None:
    """Every split holds a window of block_size + 1 tokens, checked before any work (the loaders name the split
    and what to change); otherwise a small val split would only fail after a whole train-split evaluation."""
    from gptkit.loaders import RandomBatches

    for split in ("train", "val"):
        RandomBatches(data_dir, split, cfg.train.batch_size, cfg.model.block_size)


def remove_stale_temps(run_dir: Path) -> None:
    """Temp files an earlier crash left mid-write (`.<name>.<random>.tmp`); called with the run dir's lock held,
    so no live writer owns them."""
    for p in run_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def check_fresh(run_dir: Path, overwrite: bool) -> None:
    """A new run never silently replaces another run's checkpoints and metrics."""
    if not overwrite and any((run_dir / n).exists() for n in (ckpt.LAST, ckpt.BEST, METRICS)):
        raise ValueError(f"{run_dir} already holds a run; continue it with `gptkit train --resume "
                         f"{run_dir}`, pick another --out_dir, or replace it with --overwrite")


def data_identity(meta: dict) -> dict:
    """What makes two data dirs the same data for a run: the tokenizer and the token count of every file (a moved or
    copied data dir keeps both). Example: {"fingerprint": "ab12...", "tokens": {"train": [1003854], "val": [111540]}}"""
    return {"fingerprint": meta["tokenizer"]["fingerprint"],
            "tokens": {s: [f["tokens"] for f in v["files"]] for s, v in sorted(meta["splits"].items())}}


def check_run_data(run_dir: Path, data_dir, meta: dict) -> None:
    """A resumed run reads the data it was trained on: the same tokenizer and, where the run recorded them, the same
    token counts (so a data dir that moved is accepted, and data prepared again otherwise is not)."""
    saved = ckpt.read_run_tokenizer_info(run_dir)
    if saved.get("fingerprint") != meta["tokenizer"]["fingerprint"]:
        raise ValueError(f"{data_dir} was prepared with another tokenizer than the run {run_dir} "
                         f"({tokenizer_difference(run_dir, data_dir, meta)}); resume with the run's data")
    want, have = ckpt.read_run_data_info(run_dir), data_identity(meta)
    if want and want["tokens"] != have["tokens"]:
        raise ValueError(f"{data_dir} holds other data than the run {run_dir} was trained on (its tokens: "
                         f"{_sizes(have)}; the run's: {_sizes(want)}); resume with the run's data")


def _sizes(identity: dict) -> str:
    """Example: {"tokens": {"train": [5, 5], "val": [3]}} -> "train 10 in 2 file(s), val 3 in 1 file(s)" """
    return ", ".join(f"{s} {sum(n):,} in {len(n)} file(s)" for s, n in identity["tokens"].items())


def tokenizer_difference(run_dir, data_dir, meta: dict) -> str:
    """How the run's tokenizer and the data's differ, in words: for two char vocabularies the characters each lacks
    (two 'char' specs say nothing), else the specs and sizes. Example: "the data's 'char' vocabulary lacks 'z' and
    has '!' besides (65 vs the run's 65 characters)" """
    from gptkit.tokenizers import tokenizer_from_record

    run_tok = tokenizer_from_record(ckpt.read_run_tokenizer_info(run_dir), run_dir)
    data_tok = tokenizer_from_record(meta["tokenizer"], data_dir)
    if not (hasattr(run_tok, "chars") and hasattr(data_tok, "chars")):
        spec = ckpt.read_run_tokenizer_info(run_dir)["spec"]
        return (f"the run's {spec!r}, {run_tok.vocab_size:,} ids, vs the data's "
                f"{meta['tokenizer']['spec']!r}, {data_tok.vocab_size:,} ids")
    lacks, extra = sorted(set(run_tok.chars) - set(data_tok.chars)), sorted(set(data_tok.chars) - set(run_tok.chars))
    parts = ([f"lacks {_chars(lacks)}"] if lacks else []) + ([f"has {_chars(extra)} besides"] if extra else [])
    return (f"the data's 'char' vocabulary {' and '.join(parts) or 'orders its characters otherwise'} "
            f"({len(data_tok.chars)} vs the run's {len(run_tok.chars)} characters)")


def _chars(cs: list[str], most: int = 8) -> str:
    """Example: ["a", "\n"] -> "'a', '\\n'" (repr, at most `most` of them, then how many more)"""
    more = f" and {len(cs) - most} more" if len(cs) > most else ""
    return ", ".join(repr(c) for c in cs[:most]) + more


def start_run_dir(run_dir: Path, cfg: RunConfig, data_dir, meta: dict, overwrite: bool) -> None:
    """Create the run dir (clearing an old run's files when overwrite), copy the tokenizer, write config.json."""
    if overwrite:  # checkpoints first: a kill part-way never leaves a checkpoint whose metrics are gone
        for name in (ckpt.LAST, ckpt.BEST, METRICS, PLOT):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok_info = ckpt.save_run_tokenizer(run_dir, data_dir, meta)
    ckpt.write_run_config(run_dir, cfg, tok_info, data_identity(meta))


def append_metrics(path: Path, record: dict) -> None:
    """Append one record to metrics.jsonl as one line (a kill mid-write leaves a torn last line, which
    truncate_metrics drops on resume)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records past `step` (a resumed run writes them again) and a last line cut short by a kill
    mid-write; a damaged line elsewhere is an error naming the file and line."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = []
    for lineno, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            if lineno == len(lines):
                break  # the record being written when the process died: its checkpoint never landed
            raise ValueError(f"{path}:{lineno}: not a JSON record; repair or delete the line, then resume") from None
        if record is not None and record["step"] <= step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))
