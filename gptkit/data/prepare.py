"""`gptkit prepare`: any text into token files on disk, in bounded memory, plus meta.json.

A data dir holds `train.bin` / `val.bin` (raw little-endian uint16 ids when the vocabulary fits, else
uint32: nanoGPT's format) or numbered shards `train_000000.bin ...` of a fixed number of tokens, and
`meta.json` (written last: a dir without it is an unfinished prepare). The validation split is the last
`val_fraction` of the characters, as nanoGPT's shakespeare prepare scripts cut it, so for one text file
the output is byte-identical to theirs.

Sources are text files, JSONL files (one document per line, in a field), and parquet files (a web corpus
in FineWeb-Edu's published layout: one document per row in a `text` column; needs pyarrow, the `web` extra).

Two passes over the sources: the first checks them (JSONL fields, UTF-8), hashes them, counts their
characters (and collects the char tokenizer's vocabulary); the second tokenizes blocks in worker
processes and writes them in order. Documents are separated by the tokenizer's <|endoftext|>, if any.

Not here: batches (see `gptkit.data.loaders`). No torch.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptkit.data.named import NAMED, dataset_path
from gptkit.files import atomic_write_text, cache_dir, iter_text_blocks, progress_disabled
from gptkit.pool import MMAP_THRESHOLD_MAX, fix_malloc_threshold, imap_bounded
from gptkit.tokenizer.formats import TOKENIZER_FILE

FORMAT = "gptkit-data"
VERSION = 1
META = "meta.json"
_TASK_CHARS = 1 << 20  # characters per worker task
MAX_SHARDS = 10_000  # more shard files than this is a mistaken --shard-tokens (tiny Shakespeare at 1: 1.1M files)
# Data dirs that training prepares on first use, under the user cache: name -> (source, tokenizer)
NAMED_DATA = {"shakespeare_char": ("shakespeare", "char"), "shakespeare_gpt2": ("shakespeare", "gpt2")}


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "text", "jsonl" or "parquet"


KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}  # any other suffix: a text file
FOLDER_GLOBS = ("*.txt", "*.jsonl", "*.ndjson", "*.parquet")


def resolve_sources(specs: list[str]) -> list[Source]:
    """Files, folders (their *.txt, *.jsonl and *.parquet files, sorted), globs, JSONL files (*.jsonl), parquet
    files (*.parquet: a web corpus such as FineWeb-Edu) and named datasets, in the given order."""
    out: list[Source] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            paths = sorted(q for g in FOLDER_GLOBS for q in p.glob(g))
            if not paths:
                raise ValueError(f"{spec}: folder has no *.txt, *.jsonl or *.parquet files")
        elif p.is_file():
            paths = [p]
        elif spec in NAMED:
            paths = [dataset_path(spec)]
        elif globlib.has_magic(spec):
            paths = [Path(x) for x in sorted(globlib.glob(spec)) if Path(x).is_file()]
            if not paths:
                raise ValueError(f"{spec}: the pattern matches no files")
        else:
            raise FileNotFoundError(f"{spec}: no such file, folder or glob, and not a named dataset "
                                    f"({', '.join(NAMED)})")
        out += [Source(q, KINDS.get(q.suffix, "text")) for q in paths]
    if not out:
        raise ValueError("no sources given; name text files, folders, globs, JSONL files or a dataset")
    return out


def _parquet_columns(path: Path, field: str, batch_rows: int = 1024):
    """The `field` column of a parquet file, batch by batch (pyarrow arrays), with errors that say what to do."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading parquet needs pyarrow; install it with `pip install 'gptkit[web]'` "
                         "(or `pip install pyarrow`)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid for a file that is not parquet
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise ValueError(f"{path}: no column {field!r} (columns: {names}); pass --field NAME")
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[field]):
        col = batch.column(0)
        if col.null_count:
            bad = row + col.is_null().to_pylist().index(True)
            raise ValueError(f"{path}: row {bad} has no {field!r} (null); drop such rows before preparing")
        if not (col.type == "string" or col.type == "large_string"):
            raise ValueError(f"{path}: column {field!r} holds {col.type}, not text; pass --field NAME")
        yield col
        row += len(col)


def _documents(src: Source, field: str, errors: str) -> Iterator[Iterator[str]]:
    """Each document of a source as an iterator of text blocks (a text file is one document)."""
    if src.kind == "text":
        yield iter_text_blocks(src.path, errors=errors)
        return
    if src.kind == "parquet":
        for col in _parquet_columns(src.path, field):
            for text in col.to_pylist():
                yield iter([text])
        return
    with open(src.path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8", errors=errors))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{src.path}:{lineno}: not a JSON line ({e})") from None
            value = obj.get(field) if isinstance(obj, dict) else None
            if isinstance(obj, dict) and field in obj and not isinstance(value, str):
                raise ValueError(f"{src.path}:{lineno}: field {field!r} holds {type(value).__name__} "
                                 f"{value!r:.40}, not text; pass --field NAME for the field that holds the documents")
            if not isinstance(value, str):
                fields = sorted(obj) if isinstance(obj, dict) else "-"
                chat = isinstance(obj, dict) and ("messages" in obj or "completion" in obj)
                raise ValueError(f"{src.path}:{lineno}: no string field {field!r} (fields: {fields}); " + (
                    "these are conversations: `gptkit prepare --chat`" if chat else "pass --field NAME"))
            yield iter([value])


def _scan(sources: list[Source], field: str, errors: str, want_chars: bool) -> tuple[list[dict], int, int, set[str]]:
    """Pass 1: size, sha256, character and UTF-8 byte counts of every source, and the character set if asked."""
    infos, total, total_bytes, chars = [], 0, 0, set()
    for src in sources:
        h = hashlib.sha256()
        with open(src.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        n = 0
        if src.kind == "parquet" and not want_chars:  # counted in Arrow's C++, not string by string
            import pyarrow.compute as pc

            for col in _parquet_columns(src.path, field):
                n += pc.sum(pc.utf8_length(col)).as_py() or 0
                total_bytes += pc.sum(pc.binary_length(col)).as_py() or 0
        else:
            for doc in _documents(src, field, errors):
                for block in doc:
                    n += len(block)
                    total_bytes += len(block.encode("utf-8", errors="replace"))
                    if want_chars:
                        chars.update(block)
        infos.append({"path": str(src.path), "bytes": src.path.stat().st_size, "sha256": h.hexdigest(),
                      "characters": n})
        total += n
    if total == 0:
        raise ValueError(f"the sources hold no text ({', '.join(str(s.path) for s in sources)})")
    return infos, total, total_bytes, chars


def _pieces(sources, field, errors, split_at: int, with_eot: bool) -> Iterator[tuple[str, str | None]]:
    """(split, text) pieces in corpus order, cut exactly at character `split_at`; (split, None) = <|endoftext|>."""
    pos, first = 0, True
    for src in sources:
        for doc in _documents(src, field, errors):
            if with_eot and not first:
                yield ("train" if pos < split_at else "val"), None
            first = False
            for block in doc:
                if pos < split_at < pos + len(block):
                    yield "train", block[: split_at - pos]
                    yield "val", block[split_at - pos :]
                else:
                    yield ("train" if pos < split_at else "val"), block
                pos += len(block)


def _tasks(pieces) -> Iterator[tuple[str, list]]:
    """Group consecutive pieces of one split into tasks of about _TASK_CHARS characters."""
    split, batch, size = None, [], 0
    for s, text in pieces:
        if batch and (s != split or size >= _TASK_CHARS):
            yield split, batch
            batch, size = [], 0
        split = s
        batch.append(text)
        size += len(text) if text else 0
    if batch:
        yield split, batch


_WORKER = {}


def _init_worker(tok, dtype: str) -> None:
    fix_malloc_threshold()
    _WORKER.update(tok=tok, dtype=dtype)


def _encode_task(task: tuple[str, list]) -> tuple[str, np.ndarray, int]:
    split, pieces = task
    tok, ids = _WORKER["tok"], []
    for text in pieces:
        ids += [tok.eot_token] if text is None else tok.encode_ordinary(text)
    n_bytes = sum(len(t.encode("utf-8", errors="replace")) for t in pieces if t)
    return split, np.asarray(ids, dtype=_WORKER["dtype"]), n_bytes


class _SplitWriter:
    """One split's tokens: a temp file renamed at the end, or shards each written atomically when full."""

    def __init__(self, out_dir: Path, split: str, dtype: str, shard_tokens: int) -> None:
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, dtype, shard_tokens
        self.files: list[dict] = []
        self.tokens = 0
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._tmp = out_dir / f".{split}.bin.{os.getpid()}.tmp"
        self._f = None if shard_tokens else open(self._tmp, "wb")

    def write(self, ids: np.ndarray) -> None:
        self.tokens += len(ids)
        if self._f is not None:
            ids.tofile(self._f)
            return
        self._buf.append(ids)
        self._buffered += len(ids)
        while self._buffered >= self.shard_tokens:
            self._flush_shard(self.shard_tokens)

    def _flush_shard(self, n: int) -> None:
        data = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        name = f"{self.split}_{len(self.files):06d}.bin"
        tmp = self.out_dir / f".{name}.tmp"
        data[:n].tofile(tmp)
        os.replace(tmp, self.out_dir / name)
        self.files.append({"name": name, "tokens": int(n)})
        rest = data[n:]
        self._buf, self._buffered = ([rest] if len(rest) else []), len(rest)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            os.replace(self._tmp, self.out_dir / f"{self.split}.bin")
            self.files.append({"name": f"{self.split}.bin", "tokens": self.tokens})
        elif self._buffered or not self.files:
            if not self._buf:
                self._buf = [np.zeros(0, dtype=self.dtype)]
            self._flush_shard(self._buffered)

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
        self._tmp.unlink(missing_ok=True)


def choose_dtype(vocab_size: int, dtype: str = "auto") -> str:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32. Example: 50257 -> "uint16" """
    if dtype == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    if dtype not in ("uint16", "uint32"):
        raise ValueError(f"dtype must be auto, uint16 or uint32, got {dtype!r}")
    if np.iinfo(dtype).max < vocab_size - 1:
        raise ValueError(f"the tokenizer has {vocab_size:,} ids, which do not fit {dtype}; use --dtype uint32 "
                         "(or auto)")
    return dtype


def _make_tokenizer(spec: str, chars: set[str]):
    from gptkit.tokenizer.load import get_tokenizer
    from gptkit.tokenizer.simple import CharTokenizer

    return CharTokenizer(chars) if spec == "char" else get_tokenizer(spec)


def prepare(
    sources: list[str],
    tokenizer: str,
    out_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.1,
    field: str = "text",
    shard_tokens: int = 0,
    dtype: str = "auto",
    num_workers: int | None = None,
    errors: str = "strict",
    progress: bool | None = None,
    command: str | None = None,
) -> dict:
    """Tokenize `sources` into `out_dir`; returns the meta.json contents. See the module docstring."""
    fix_malloc_threshold()  # streaming many MB through Python strings; see parallel.fix_malloc_threshold
    try:
        return _prepare(sources, tokenizer, out_dir, val_fraction=val_fraction, field=field,
                        shard_tokens=shard_tokens, dtype=dtype, num_workers=num_workers, errors=errors,
                        progress=progress, command=command)
    finally:  # the setting is process-wide; a training step that follows wants glibc's usual behaviour back
        fix_malloc_threshold(MMAP_THRESHOLD_MAX)


def _prepare(sources, tokenizer, out_dir, *, val_fraction, field, shard_tokens, dtype, num_workers, errors, progress,
             command) -> dict:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 0:
        raise ValueError(f"shard_tokens must be >= 0 (0 = one file per split), got {shard_tokens}")
    srcs = resolve_sources(sources)
    infos, total_chars, total_bytes, chars = _scan(srcs, field, errors, want_chars=tokenizer == "char")
    if shard_tokens and total_bytes // shard_tokens > MAX_SHARDS:  # UTF-8 bytes: about the most tokens text makes
        raise ValueError(f"shard_tokens={shard_tokens:,} (--shard-tokens) would write about "
                         f"{total_bytes // shard_tokens:,} shard files for {total_bytes:,} bytes of text (at most "
                         f"{MAX_SHARDS:,}); give a larger "
                         "count (build-nanogpt's: 100M), or 0 for one file per split")
    tok = _make_tokenizer(tokenizer, chars)
    dtype = choose_dtype(tok.vocab_size, dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # until the new meta.json is written, the dir is unfinished
    split_at = int(total_chars * (1 - val_fraction))
    writers = {s: _SplitWriter(out, s, dtype, shard_tokens) for s in ("train", "val")}
    workers = num_workers or os.cpu_count() or 1
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    try:
        pieces = _pieces(srcs, field, errors, split_at, with_eot=tok.eot_token is not None)
        tasks = imap_bounded(_encode_task, _tasks(pieces), workers, initializer=_init_worker, initargs=(tok, dtype))
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", disable=progress_disabled(progress))
        with bar:
            for split, ids, n_bytes in tasks:
                writers[split].write(ids)
                bar.update(n_bytes)
                tokens = sum(w.tokens for w in writers.values())
                bar.set_postfix(tok_per_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f}", refresh=False)
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    tok_file = None
    if tokenizer == "char" or Path(tokenizer).exists():
        tok_file = TOKENIZER_FILE
        tok.save(out / TOKENIZER_FILE)
    _remove_stale(out, {f["name"] for w in writers.values() for f in w.files} | {tok_file})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": {"spec": tokenizer, "file": tok_file, "vocab_size": tok.vocab_size, "eot_token": tok.eot_token,
                      "fingerprint": tok.fingerprint()},
        "dtype": dtype,
        "val_fraction": val_fraction,
        "splits": {s: {"tokens": w.tokens, "files": w.files} for s, w in writers.items()},
        "characters": {"train": split_at, "val": total_chars - split_at},
        "sources": infos,
        "command": command,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2) + "\n")
    return meta


def _remove_stale(out: Path, keep: set) -> None:
    """Remove the token files (and tokenizer) an earlier prepare into `out` left that the new meta.json will not
    list: they would look like part of the data. Files gptkit does not name are left alone."""
    for p in [*out.glob("*.bin"), out / TOKENIZER_FILE]:
        if p.name not in keep and p.is_file() and re.fullmatch(r"(train|val)(_\d{6})?\.bin|" + TOKENIZER_FILE, p.name):
            p.unlink()


# -- reading a data dir back --------------------------------------------------------------------------


def load_meta(data_dir: str | os.PathLike) -> dict:
    """meta.json of a data dir, with clear errors for a missing, unfinished or foreign dir."""
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such data dir; create it with `gptkit prepare SOURCE -o {d}`")
    path = d / META
    if not path.is_file():
        bins = sorted(p.name for p in d.glob("*.bin"))
        hint = " (it has .bin files: an interrupted prepare, or not made by gptkit)" if bins else ""
        raise ValueError(f"{d} has no {META}{hint}; run `gptkit prepare SOURCE -o {d}` to (re)create it")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); prepare the data again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a gptkit data dir's meta.json")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: data format version {meta.get('version')}, this gptkit reads {VERSION}; "
                         "prepare again")
    return meta


def resolve_data_dir(spec: str | os.PathLike) -> Path:
    """A data dir, or a named one (NAMED_DATA) prepared under the user cache the first time it is asked for.

    Example: "shakespeare_char" -> ~/.cache/gptkit/data/shakespeare_char (tiny Shakespeare, char tokens)
    """
    p = Path(spec)
    if p.is_dir() or str(spec) not in NAMED_DATA:
        load_meta(p)  # a clear error for a missing or unfinished dir
        return p
    out = cache_dir() / "data" / str(spec)
    if not (out / META).is_file():
        source, tokenizer = NAMED_DATA[str(spec)]
        prepare([source], tokenizer, out, progress=False, command=f"gptkit prepare {source} -t {tokenizer} -o {out}")
    return out


def data_tokenizer(data_dir: str | os.PathLike):
    """The tokenizer a data dir was prepared with."""
    from gptkit.tokenizer.load import tokenizer_from_record

    return tokenizer_from_record(load_meta(data_dir)["tokenizer"], data_dir)


def check_tokenizer(data_dir: str | os.PathLike, tok, name: str = "the tokenizer") -> None:
    """Raise ValueError if `tok` is not the tokenizer the data dir was prepared with."""
    t = load_meta(data_dir)["tokenizer"]
    if t["fingerprint"] != tok.fingerprint():
        raise ValueError(
            f"{data_dir} was prepared with tokenizer {t['spec']!r} (vocab {t['vocab_size']:,}), which differs from "
            f"{name} (vocab {tok.vocab_size:,}); prepare the data again with that tokenizer, or give a model trained "
            "with the data's tokenizer"
        )
