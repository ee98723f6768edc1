"""The models and runs a server may touch: the ones named on its command line and the run dirs under --runs.

A request names a model or run by its id, which is looked up in this table and never joined to a path, so no
request reaches the file system outside what was named: ids are the command line's specs and the run dirs'
names relative to --runs. Every file of a run dir is read through `inside_runs`: a run dir, or any file in it, whose
real path leaves --runs (a symlink out) is refused, so no byte from outside --runs is read or served.

Models load on first use, at most `max_models` at once (the least recently used idle one is dropped past that), and
a run's model is loaded again when its checkpoint file changes (between requests: a request in flight finishes on
the weights it started with). Also here: a run's metrics.jsonl, read incrementally while the run may still be
appending to it. No torch at import.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from gptkit.training.checkpoint import checkpoint_step
from gptkit.training.run_dir import CONFIG, checkpoint_path, is_run_dir

METRICS = "metrics.jsonl"


class UnknownModel(LookupError):
    """A model or run id the server does not serve (404)."""


class ModelUnavailable(RuntimeError):
    """A served model whose files could not be loaded (a run without a checkpoint yet, a GPT-2 name offline): 503."""


class OutsideRuns(PermissionError):
    """A run file whose real path leaves --runs (403)."""


def inside_runs(root: Path, path: Path) -> Path:
    """`path` if its real path (links followed) is inside root's, else OutsideRuns: the one check every run file the
    server reads goes through."""
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a link loop
        inside = False
    if not inside:
        raise OutsideRuns(f"{path.name} of this run links out of --runs; gptkit serve reads nothing outside it")
    return path


def find_runs(root: Path) -> dict[str, Path]:
    """Run dirs under root (one or two levels down), by their path relative to root: "shakespeare_char". A dir whose
    own real path, or its config.json's, leaves root is not listed."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for d in sorted([*root.glob("*"), *root.glob("*/*")]):
        try:
            inside_runs(root, d)
            inside_runs(root, d / CONFIG)
        except OutsideRuns:
            continue
        if d.is_dir() and is_run_dir(d):
            found[d.relative_to(root).as_posix()] = d
    return found


class MetricsCache:
    """Each run's metrics.jsonl records, read incrementally: a poll reads only the bytes appended since the last one
    (a file that shrank, as a resumed run truncates it, is read again). A last line still being written (no newline
    yet) is left for next time."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int, list[dict]]] = {}  # path -> (inode, bytes read, records)
        self._lock = threading.Lock()

    def records(self, path: Path) -> list[dict]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        with self._lock:
            ino, done, records = self._seen.get(path, (st.st_ino, 0, []))
            if ino != st.st_ino or st.st_size < done:
                done, records = 0, []
            with open(path, "rb") as f:
                f.seek(done)
                new = f.read(st.st_size - done)
            complete = new[: new.rfind(b"\n") + 1]
            records = records + [r for r in map(_record, complete.split(b"\n")[:-1]) if r is not None]
            self._seen[path] = (st.st_ino, done + len(complete), records)
            return records


def _record(line: bytes) -> dict | None:
    try:
        record = json.loads(line.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


class Registry:
    """Model ids -> specs; loaded workers kept per id, least recently used first out. `load(id)` is thread-safe."""

    def __init__(self, specs: list[str], runs: Path | None, make_worker, max_models: int = 4) -> None:
        self.specs, self.runs_root, self.make_worker = list(specs), runs, make_worker
        self.max_models = max_models
        self._loaded: OrderedDict[str, tuple[object, tuple | None]] = OrderedDict()  # id -> (worker, stamp)
        self._lock = threading.Lock()
        self.metrics = MetricsCache()
        self._tokenizers: dict[str, object] = {}
        self._info: dict[tuple, dict] = {}

    def runs(self) -> dict[str, Path]:
        return find_runs(self.runs_root) if self.runs_root else {}

    def ids(self, runs: dict[str, Path] | None = None) -> dict[str, str]:
        """Every model id -> the spec that loads it (command-line ones first). `runs`: a scan of --runs already made
        (each method that takes one scans the folder once, not once per run)."""
        out = {s: s for s in self.specs}
        for name, path in (self.runs() if runs is None else runs).items():
            out.setdefault(name, os.fspath(path))
        return out

    def run_dir(self, name: str, runs: dict[str, Path] | None = None) -> Path:
        """The run dir `name` (an id from /api/runs), every file in it checked to stay inside --runs."""
        runs = self.runs() if runs is None else runs
        if name not in runs:
            raise UnknownModel(f"no run {name!r} under --runs; GET /api/runs lists them")
        for f in runs[name].iterdir():
            inside_runs(self.runs_root, f)
        return runs[name]

    def spec(self, model_id: str, runs: dict[str, Path] | None = None) -> str:
        """The spec of a served id; a run under --runs is checked file by file (see run_dir)."""
        runs = self.runs() if runs is None else runs
        ids = self.ids(runs)
        if model_id not in ids:
            raise UnknownModel(f"the model {model_id!r} does not exist; GET /v1/models lists the models served")
        if model_id not in self.specs:
            self.run_dir(model_id, runs)
        return ids[model_id]

    def loaded(self) -> dict:
        with self._lock:
            return {m: w for m, (w, _) in self._loaded.items()}

    def tokenizer(self, model_id: str):
        """A served model's own tokenizer: its loaded worker's, else read from its source without the weights."""
        from gptkit.training.source import source_tokenizer

        with self._lock:
            if model_id in self._loaded:
                return self._loaded[model_id][0].tok
        if model_id not in self._tokenizers:
            self._tokenizers[model_id] = source_tokenizer(self.spec(model_id))
        return self._tokenizers[model_id]

    def served_step(self, model_id: str, runs: dict[str, Path] | None = None) -> int | None:
        """The step of the checkpoint a run's next request is served from (None for other models, and for a run with a
        file that links out of --runs: not even a header is read through such a link)."""
        try:
            spec = self.spec(model_id, runs)
        except (UnknownModel, OutsideRuns):
            return None
        path = _checkpoint(spec)
        return checkpoint_step(path) if path else None

    def model_info(self, model_id: str, runs: dict[str, Path] | None = None) -> dict:
        """What the page shows of a model before loading it: {"chat": whether it has a chat format, "context_length":
        its block_size}, read without the weights (cached by its checkpoint's stamp); {} where it cannot be read."""
        from gptkit.training.source import source_chat_format, source_config

        try:
            spec = self.spec(model_id, runs)
            key = (model_id, _stamp(spec))
            if key not in self._info:
                self._info[key] = {"chat": source_chat_format(spec) is not None,
                                   "context_length": source_config(spec).block_size}
            return self._info[key]
        except Exception:  # noqa: BLE001 -- a model that cannot be read says so when it is asked for, not here
            return {}

    def load(self, model_id: str):
        """The worker of model_id: loaded on its first request, again when its run's checkpoint changed since."""
        with self._lock:
            spec = self.spec(model_id)
            stamp = _stamp(spec)
            if model_id in self._loaded and self._loaded[model_id][1] != stamp:
                self._loaded.pop(model_id)[0].close()  # its requests in flight finish on the old weights
            if model_id not in self._loaded:
                self._evict()
                try:
                    worker = self.make_worker(spec)
                except Exception as e:  # noqa: BLE001 -- any load failure is the model's, said in one line
                    raise ModelUnavailable(f"the model {model_id!r} could not be loaded: {' '.join(str(e).split())}"
                                           ) from e
                self._loaded[model_id] = (worker, stamp)
            self._loaded.move_to_end(model_id)
            return self._loaded[model_id][0]

    def _evict(self) -> None:
        """Make room for one more model: drop the least recently used ones past max_models (a dropped worker
        finishes what it runs, then lets its model go)."""
        while len(self._loaded) >= self.max_models:
            _, (worker, _) = self._loaded.popitem(last=False)
            worker.close()


def _checkpoint(spec: str) -> Path | None:
    """The checkpoint file `gptkit sample` would read for a run dir (best if it has one), else None."""
    if not is_run_dir(spec):
        return None
    try:
        return checkpoint_path(spec, "auto")
    except ValueError:
        return None


def _stamp(spec: str) -> tuple | None:
    """What tells a run's served checkpoint changed: its file, inode, size and mtime (checkpoints are renamed into
    place, so a new one is a new inode). None for models that are not runs."""
    path = _checkpoint(spec)
    if path is None:
        return None
    st = path.stat()
    return (path.name, st.st_ino, st.st_size, st.st_mtime_ns)


PRETRAINED_TOKENIZERS = ("gpt2", "cl100k_base")
