"""What a run decides before its first step, without a framework: its config on --resume, its model shape and
--init_from weights (grown when the data's tokenizer adds special tokens to the source's: vocabulary extension),
gradient accumulation and the learning-rate schedule, and its training batches. The run dir's checks and files are
gptkit.training.run_dir's.

gptkit.training.run.Run calls these in its set-up; nothing here trains. No torch, no mlx.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig, RunConfig, TrainConfig, parse_overrides
from gptkit.data.prepare import NAMED_DATA
from gptkit.training.run_dir import read_run_config
from gptkit.training.source import ModelSource, read_model_source

# Fields a resumed run may change; anything else must match the checkpoint's run.
RESUMABLE = {"max_iters", "max_seconds", "eval_interval", "log_interval", "sample_tokens", "sample_prompt",
             "progress", "device", "compile", "chunked_loss", "threads", "peak_flops", "out_dir", "parallel",
             "reshard_after_forward", "activation_checkpointing"}


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


def ema_at(steps: int, decay: float) -> float:
    """The weight average's decay after `steps` optimizer steps: short at first, so that the average is not held
    back by the random init (TensorFlow's ExponentialMovingAverage with num_updates; timm's warmup is alike).

    Example (decay 0.995): after 1 step -> 0.18, after 100 -> 0.92, after 1,790 or more -> 0.995.
    """
    return min(decay, (1 + steps) / (10 + steps))


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
    saved = read_run_config(run_dir)
    model_over, train_over = parse_overrides(overrides)
    bad = sorted(set(model_over) | (set(train_over) - RESUMABLE - {"data"}))  # data: checked by check_run_data
    if bad:
        raise ValueError(f"--resume keeps the run's config; these cannot change: {', '.join(bad)} "
                         f"(may change: {', '.join(sorted(RESUMABLE))}). Start a new --out_dir instead")
    data = train_over.get("data", saved.train.data)
    if "data" not in train_over and data not in NAMED_DATA and not Path(data).is_dir():
        raise ValueError(f"the run's data dir {data} is gone; if it moved, resume with --data=NEW_DIR (accepted when "
                         "its meta.json matches the run's: same tokenizer, same token counts)")
    return replace(saved, train=replace(saved.train, **{**train_over, "out_dir": str(run_dir)}))


def resolve_data(t: TrainConfig) -> Path:
    """The data dir of a run: a dir from `gptkit prepare`, a named text set (prepared on first use), or a built-in
    chat task's name (`--data=reverse`), prepared on first use with the tokenizer of --init_from, whose model it
    finetunes."""
    from gptkit.data.prepare import resolve_data_dir
    from gptkit.data.tasks import TASKS

    if t.data not in TASKS or Path(t.data).exists():
        return resolve_data_dir(t.data)
    if not t.init_from:
        raise ValueError(f"--data={t.data} is a chat task, learned by finetuning a model: pass --init_from (a run dir, "
                         "an HF folder or a GPT-2 name), whose tokenizer the task is prepared with")
    from gptkit.data.chat import task_data_dir
    from gptkit.training.source import source_tokenizer_spec

    return task_data_dir(t.data, source_tokenizer_spec(t.init_from))


def epoch_steps(t: TrainConfig, batches, tokens_per_step: int, data_dir) -> int:
    """The optimizer steps of `t.epochs` passes over the training split (rounded up): over its conversations for
    packed rows, over its tokens otherwise. Example: 2 epochs of 900 rows at 16 rows a step -> 113 steps"""
    if hasattr(batches, "rows_per_epoch"):
        rows_per_step = tokens_per_step // batches.T  # rows of block_size tokens over ranks and micro-steps
        return max(1, math.ceil(t.epochs * batches.rows_per_epoch() / rows_per_step))
    from gptkit.data.prepare import load_meta

    return max(1, math.ceil(t.epochs * load_meta(data_dir)["splits"]["train"]["tokens"] / tokens_per_step))


def init_source(spec: str, model_cfg, data_dir, meta: dict) -> ModelSource:
    """The weights of --init_from, with the run's model config: the source's shape, this config's dropout, and
    block_size cropped to this config's when smaller (nanoGPT's crop_block_size). Refuses data prepared with
    another tokenizer than the source's."""
    src = read_model_source(spec, which="last")
    want = src.tokenizer_fingerprint()
    have = meta["tokenizer"]
    if have["fingerprint"] != want and (first := _first_added_id(src, data_dir, meta)) is not None:
        src.config, src.tensors = grow_vocab(src.config, src.tensors, first, have["vocab_size"])
    elif have["fingerprint"] != want or have["vocab_size"] != src.config.vocab_size:
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


def _first_added_id(src: ModelSource, data_dir, meta: dict) -> int | None:
    """When the data's tokenizer is the source's with special tokens appended (the chat tokens: vocabulary
    extension), the first of their ids; else None."""
    from gptkit.tokenizer.load import tokenizer_from_record

    base, data = src.load_tokenizer(), tokenizer_from_record(meta["tokenizer"], data_dir)
    added = sorted(data.special_tokens.keys() - base.special_tokens.keys(), key=data.special_tokens.get)
    if not added or base.with_special_tokens(added).fingerprint() != data.fingerprint():
        return None
    return base.vocab_size


def grow_vocab(config: GPTConfig, tensors: dict, first: int, vocab_size: int) -> tuple[GPTConfig, dict]:
    """A model's config and weights for a vocabulary extended with the ids first .. vocab_size - 1: their embedding
    rows (and an untied head's) start at the mean of the rows before `first`, and every other row stays as it was,
    so the logits of the old ids do not change. A tensor grows only past its padded size (GPT-2's 50,257 rows padded
    to 50,304 have room for 47 more). Example: vocab 65 -> 67, no padding: wte (65, C) -> (67, C), rows 65 and 66
    equal to wte[:65].mean(0)."""
    config = replace(config, vocab_size=max(config.vocab_size, vocab_size))
    tensors = dict(tensors)
    for name in ("wte.weight", "lm_head.weight"):  # the head is in the tensors only when untied
        if name not in tensors:
            continue
        w = tensors[name]
        grown = np.zeros((max(config.padded_vocab_size, w.shape[0]), w.shape[1]), dtype=w.dtype)
        grown[: w.shape[0]] = w
        grown[first:vocab_size] = w[:first].mean(axis=0, dtype=np.float64)
        tensors[name] = grown
    return config, tensors


def run_model_config(cfg: RunConfig, data_dir, meta: dict, resume: bool) -> tuple[RunConfig, ModelSource | None]:
    """(the run's config with its model resolved, the --init_from source or None): the model shape comes from
    init_from when starting fresh from one, else from the config with the data's vocab_size."""
    if cfg.train.init_from and not resume:
        init = init_source(cfg.train.init_from, cfg.model, data_dir, meta)
        return replace(cfg, model=init.config), init
    return replace(cfg, model=replace(cfg.model, vocab_size=meta["tokenizer"]["vocab_size"])), None


def train_batches(data_dir, cfg: RunConfig, rank: int = 0, world_size: int = 1, chat: bool = False):
    """The training batches of a rank: nanoGPT's random windows (seed + rank), build-nanogpt's shard strides, or,
    for conversations with the default loader, rows of whole conversations (gptkit.data.packing)."""
    from gptkit.data.loaders import RandomBatches, ShardedLoader

    t, T = cfg.train, cfg.model.block_size
    if t.loader == "sequential":
        return ShardedLoader(data_dir, "train", t.batch_size, T, rank=rank, world_size=world_size)
    if chat:
        from gptkit.data.packing import PackedRows

        return PackedRows(data_dir, "train", t.batch_size, T, seed=t.seed, rank=rank, world_size=world_size)
    return RandomBatches(data_dir, "train", t.batch_size, T, seed=t.seed + rank)


def eval_batches(data_dir, split: str, cfg: RunConfig, seed: int, chat: bool = False):
    """The fixed batches of an evaluation: random windows, or for conversations rows of whole ones."""
    from gptkit.data.loaders import RandomBatches

    t, T = cfg.train, cfg.model.block_size
    if chat:
        from gptkit.data.packing import PackedRows

        return PackedRows(data_dir, split, t.batch_size, T, seed=seed)
    return RandomBatches(data_dir, split, t.batch_size, T, seed=seed)


def check_conversations(data_dir, cfg: RunConfig, meta: dict) -> None:
    """Warn when conversations are longer than a row (block_size + 1 tokens): they are cropped, and their replies
    may be lost from training."""
    import warnings

    from gptkit.data.packing import conversation_starts

    train = meta["splits"]["train"]
    starts = conversation_starts(data_dir, "train", train["files"][0])
    lengths = np.diff(np.append(starts, train["tokens"]))
    long = int((lengths > cfg.model.block_size + 1).sum())
    if long:
        warnings.warn(f"{long:,} of {len(lengths):,} training conversations are longer than block_size + 1 = "
                      f"{cfg.model.block_size + 1} tokens (the longest: {int(lengths.max()):,}); they are cropped, and "
                      "the replies past the crop are not learned. Train with a larger --block_size", stacklevel=2)


def is_chat(meta: dict) -> bool:
    """Whether a data dir's meta.json is of conversations (`gptkit prepare --chat`): masked targets, packed rows."""
    return "chat" in meta


def check_splits(data_dir, cfg: RunConfig) -> None:
    """Every split holds a window of block_size + 1 tokens, checked before any work (the loaders name the split
    and what to change); otherwise a small val split would only fail after a whole train-split evaluation."""
    from gptkit.data.loaders import RandomBatches

    for split in ("train", "val"):
        RandomBatches(data_dir, split, cfg.train.batch_size, cfg.model.block_size)
