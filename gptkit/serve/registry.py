"""The models and runs a server may touch: the ones named on its command line and the run dirs under --runs.

A request names a model or run by its id, which is looked up in this table and never joined to a path, so no
request reaches the file system outside what was named: ids are the command line's specs and the run dirs'
names relative to --runs; a run dir whose real path leaves --runs (a symlink out) is not listed. Models load on
first use. Also here: a run's metrics.jsonl read while the run may still be appending to it. No torch at import.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from gptkit.training.run_dir import is_run_dir

METRICS = "metrics.jsonl"


class UnknownModel(LookupError):
    """A model or run id the server does not serve (404)."""


def find_runs(root: Path) -> dict[str, Path]:
    """Run dirs under root (one or two levels down), by their path relative to root: "shakespeare_char"."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    real_root = root.resolve()
    for d in sorted([*root.glob("*"), *root.glob("*/*")]):
        try:
            inside = d.resolve().is_relative_to(real_root)
        except OSError:
            continue
        if inside and d.is_dir() and is_run_dir(d):
            found[d.relative_to(root).as_posix()] = d
    return found


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's records; a last line still being written (no newline yet, or cut) is left for next time."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n")[:-1]:  # complete lines only
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Registry:
    """Model ids -> specs; loaded (model, tokenizer, worker) kept per id. `load(id)` is thread-safe."""

    def __init__(self, specs: list[str], runs: Path | None, make_worker) -> None:
        self.specs, self.runs_root, self.make_worker = list(specs), runs, make_worker
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def runs(self) -> dict[str, Path]:
        return find_runs(self.runs_root) if self.runs_root else {}

    def ids(self) -> dict[str, str]:
        """Every model id -> the spec that loads it (command-line ones first)."""
        out = {s: s for s in self.specs}
        for name, path in self.runs().items():
            out.setdefault(name, os.fspath(path))
        return out

    def run_dir(self, name: str) -> Path:
        runs = self.runs()
        if name not in runs:
            raise UnknownModel(f"no run {name!r} under --runs; GET /api/runs lists them")
        return runs[name]

    def loaded(self) -> dict:
        with self._lock:
            return dict(self._loaded)

    def load(self, model_id: str):
        """The worker of model_id, loaded on its first request (only then is --runs scanned for it)."""
        with self._lock:
            if model_id not in self._loaded:
                ids = self.ids()
                if model_id not in ids:
                    raise UnknownModel(f"the model {model_id!r} does not exist; GET /v1/models lists the models served")
                self._loaded[model_id] = self.make_worker(ids[model_id])
            return self._loaded[model_id]


PRETRAINED_TOKENIZERS = ("gpt2", "cl100k_base")


def tokenizer_of(spec: str):
    """The tokenizer of a served model's spec without loading its weights: a run dir's own, else GPT-2's (GPT-2
    names and HF GPT-2 folders)."""
    from gptkit.tokenizer.load import get_tokenizer, tokenizer_from_record
    from gptkit.training.run_dir import read_run_tokenizer_info

    if is_run_dir(spec):
        return tokenizer_from_record(read_run_tokenizer_info(spec), spec)
    return get_tokenizer("gpt2")
