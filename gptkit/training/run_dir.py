"""The run dir, all of it: which files it holds, the lock that makes one run its only writer, the checks that a
fresh run never replaces another and a resumed one continues the same run, config.json, the tokenizer copy and
metrics.jsonl.

A run dir holds:
- `config.json`: the resolved RunConfig (model + train), what the run's tokenizer is and what identifies its
  data, written when the run starts.
- `ckpt.safetensors` (the latest) and `best.safetensors` (lowest val loss), in the format of
  gptkit.training.checkpoint: `model.<name>` the weights, `optim.<i>.<key>` the optimizer state, `rank<r>.<key>`
  each rank's RNG state.
- `tokenizer.model` when the data's tokenizer is a file (char, trained BPE); else config.json names it.
- `metrics.jsonl` (one record per evaluation) and `loss.png` (gptkit.training.plot).
- `.gptkit.lock`, held by the training process while it runs.

numpy and the standard library only: both backends, sample, serve and export share it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig, RunConfig
from gptkit.files import atomic_write_bytes, atomic_write_text
from gptkit.tokenizer.formats import TOKENIZER_FILE
from gptkit.training.checkpoint import FIX, read_checkpoint

CONFIG = "config.json"
LAST, BEST = "ckpt.safetensors", "best.safetensors"


def checkpoint_path(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """The checkpoint file of a run dir ("last", "best", or "auto": best when the run has one), with an error that
    says what is wrong."""
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such run dir; train one with `gptkit train --out_dir={d}`")
    if not (d / CONFIG).is_file():
        raise ValueError(f"{d} is not a gptkit run dir (no {CONFIG}); give the --out_dir of a `gptkit train` run")
    if which == "auto":
        which = "best" if (d / BEST).is_file() else "last"
    name = {"last": LAST, "best": BEST}.get(which)
    if name is None:
        raise ValueError(f"which checkpoint: 'last', 'best' or 'auto', got {which!r}")
    path = d / name
    if not path.is_file():
        other = d / (BEST if name == LAST else LAST)
        if other.is_file():
            raise ValueError(f"{d} has no {name} (it has {other.name})")
        holder = lock_holder(d)
        if holder:  # a live run: never advise --overwrite, which would erase it
            raise ValueError(f"{d} has no checkpoint yet: its run (pid {holder}) is still training and writes one at "
                             "its first evaluation after step 0; try again then")
        raise ValueError(f"{d} has no {name} (the run wrote no checkpoint yet: start it again with "
                         f"`gptkit train ... --out_dir={d} --overwrite`)")
    return path


def read_model_checkpoint(run_dir: str | os.PathLike, which: str = "last"
                          ) -> tuple[GPTConfig, dict[str, np.ndarray], Path]:
    """The model config and weights (by parameter name) of a run's checkpoint, and the file they came from."""
    path = checkpoint_path(run_dir, which)
    tensors, meta = read_checkpoint(path, prefix="model.")
    if not isinstance(meta.get("model"), dict):
        raise ValueError(f"{path}: a gptkit checkpoint without its model config; {FIX}")
    try:
        return GPTConfig(**meta["model"]), tensors, path
    except TypeError as e:  # a field this gptkit does not know
        raise ValueError(f"{path}: its model config does not fit this gptkit ({e}); {FIX}") from None


def is_run_dir(path: str | os.PathLike) -> bool:
    """A gptkit run dir (config.json with model + train), as opposed to a HF folder (config.json too)."""
    try:
        doc = read_config_doc(path)
    except ValueError:  # no config.json, or not JSON
        return False
    return isinstance(doc, dict) and "train" in doc and "model" in doc


def read_config_doc(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a gptkit run dir (no {CONFIG})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    return RunConfig.from_dict(read_config_doc(run_dir))


def write_run_config(run_dir: str | os.PathLike, cfg: RunConfig, tokenizer: dict, data: dict | None = None) -> None:
    """config.json: the config, what the run's tokenizer is, and what identifies its data (see run_setup)."""
    doc = {**cfg.to_dict(), "tokenizer": tokenizer, **({"data": data} if data else {})}
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(doc, indent=2) + "\n")


def save_run_tokenizer(run_dir: str | os.PathLike, data_dir: str | os.PathLike, meta: dict) -> dict:
    """Copy a data dir's tokenizer file into the run dir; returns what config.json records about it (with the chat
    format of conversation data: the run speaks it)."""
    t = meta["tokenizer"]
    chat = {"chat": meta["chat"]["chat_format"]} if "chat_format" in meta.get("chat", {}) else {}  # the run's format
    if t["file"]:
        src = Path(data_dir) / t["file"]
        atomic_write_bytes(Path(run_dir) / TOKENIZER_FILE, src.read_bytes())
        return {"spec": t["spec"], "file": TOKENIZER_FILE, "fingerprint": t["fingerprint"], **chat}
    return {"spec": t["spec"], "file": None, "fingerprint": t["fingerprint"], **chat}


def read_run_tokenizer_info(run_dir: str | os.PathLike) -> dict:
    """What config.json records about the run's tokenizer: spec, file, fingerprint."""
    doc = read_config_doc(run_dir)
    if not doc.get("tokenizer"):
        raise ValueError(f"{run_dir}: config.json records no tokenizer; is this a gptkit run dir?")
    return doc["tokenizer"]


def read_run_data_info(run_dir: str | os.PathLike) -> dict | None:
    """What config.json records about the run's data (None for a run from before it did)."""
    return read_config_doc(run_dir).get("data")


METRICS = "metrics.jsonl"
PLOT = "loss.png"


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


def lock_holder(run_dir: Path) -> str | None:
    """The pid (as the lock file records it) of another training run that holds the run dir's lock now, or None
    (also when this process holds it: a run resuming itself). Reads only: a dir without a lock file is left as is."""
    import fcntl

    path = Path(run_dir) / LOCK
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read().strip() or "unknown"
            return None if holder == str(os.getpid()) else holder
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def unlock_new_run_dir(run_dir: Path) -> None:
    """Remove the lock file and the run dir that lock_run_dir made for a run whose set-up then failed (a dir that
    holds anything else stays)."""
    (run_dir / LOCK).unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass


def remove_stale_temps(run_dir: Path) -> None:
    """Temp files an earlier crash left mid-write (`.<name>.<random>.tmp`); called with the run dir's lock held,
    so no live writer owns them."""
    for p in run_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def check_fresh(run_dir: Path, overwrite: bool) -> None:
    """A new run never silently replaces another run's checkpoints and metrics."""
    if not overwrite and any((run_dir / n).exists() for n in (LAST, BEST, METRICS)):
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
    saved = read_run_tokenizer_info(run_dir)
    if saved.get("fingerprint") != meta["tokenizer"]["fingerprint"]:
        raise ValueError(f"{data_dir} was prepared with another tokenizer than the run {run_dir} "
                         f"({tokenizer_difference(run_dir, data_dir, meta)}); resume with the run's data")
    want, have = read_run_data_info(run_dir), data_identity(meta)
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
    from gptkit.tokenizer.load import tokenizer_from_record

    run_tok = tokenizer_from_record(read_run_tokenizer_info(run_dir), run_dir)
    data_tok = tokenizer_from_record(meta["tokenizer"], data_dir)
    if not (hasattr(run_tok, "chars") and hasattr(data_tok, "chars")):
        spec = read_run_tokenizer_info(run_dir)["spec"]
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
        for name in (LAST, BEST, METRICS, PLOT):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    tok_info = save_run_tokenizer(run_dir, data_dir, meta)
    write_run_config(run_dir, cfg, tok_info, data_identity(meta))


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


def check_resumable(path: Path, meta: dict, backend: str, model: GPTConfig) -> None:
    """Refuse a checkpoint (its header `meta`) of another backend or another model config than the run resuming it.
    Another number of processes, or ddp/fsdp, is fine: the checkpoint holds the whole state, whatever wrote it."""
    written = meta.get("backend", "torch")
    if written != backend:
        raise ValueError(f"{path} was written by the {written} backend; resume it with --backend {written} "
                         "(weights move between backends; optimizer state does not)")
    now, saved = model.__dict__, GPTConfig(**meta["model"]).__dict__  # fields added since: defaults
    if saved != now:
        diff = {k: (v, now.get(k)) for k, v in saved.items() if now.get(k) != v}
        raise ValueError(f"{path} was saved from another model config (checkpoint vs now: {diff}); "
                         "resume with the run's own config, or start a new --out_dir")
