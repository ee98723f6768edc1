"""Files: atomic writes, the user cache, reference files found locally or downloaded with a checksum, text read in
blocks, and the progress-bar switch every long job shares.

Stdlib only. Does not parse any format; the modules that own a format use these helpers.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only when the block ends without an error: written to a temp file in
    the same folder, fsynced, then renamed over `path`. On any exception (Ctrl-C included) the temp file is
    removed and `path` is untouched, so a crash never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
        os.close(fd)
        with open(tmp, "wb") as f:  # f.name is the temp file's path, for a check before the rename
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, replaceable: Collection[str] = ()
               ) -> Iterator[Path]:
    """A folder that appears at `path`, complete, only when the block ends without an error: the block fills a temp
    folder beside it, which is then renamed into place. A file at `path` is refused. A non-empty folder is replaced
    (once the new one is complete) only when `overwrite` and it holds nothing but plain files named in `replaceable`
    (what an earlier write of the same kind left): never a folder of other things, such as the parent of a run, `.`
    or `~`. On error nothing changes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give the path of a folder to write")
    entries = sorted(path.iterdir()) if path.is_dir() else []
    foreign = [p.name for p in entries if p.name not in replaceable or p.is_symlink() or not p.is_file()]
    if foreign:
        raise ValueError(f"{path} holds other things than an earlier export ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder")
    if entries and not overwrite:
        raise ValueError(f"{path} holds an earlier export; pass --overwrite to replace it, or give a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; give the folder the mode mkdir would
        yield tmp
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_writer)."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's `disable` for a `progress` option: None shows the bar only on a terminal. Example: True -> False"""
    return None if progress is None else not progress


@dataclass(frozen=True)
class RefFile:
    """A public reference file: where it lives under a data folder, where it comes from, its sha256."""

    relpath: str  # e.g. "gpt2/encoder.json", relative to $GPTKIT_DATA or the user cache
    url: str
    sha256: str


def user_cache_root() -> Path:
    """Where user caches live: $XDG_CACHE_HOME, else ~/.cache (gptkit's and huggingface_hub's rule)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def cache_dir() -> Path:
    """The user cache: $GPTKIT_CACHE, else $XDG_CACHE_HOME/gptkit, else ~/.cache/gptkit."""
    if os.environ.get("GPTKIT_CACHE"):
        return Path(os.environ["GPTKIT_CACHE"])
    return user_cache_root() / "gptkit"


def download_bytes(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https URLs)
        return r.read()


def find_reference_file(ref: RefFile, download: Callable[[str], bytes] | None = download_bytes,
                        check: Callable[[bytes], None] | None = None) -> Path:
    """Locate `ref`: $GPTKIT_DATA/relpath, then the user cache, else download it into the cache and
    check its sha256 (or, for a file whose publisher gives no checksum, ref.sha256 == "", pass the bytes to
    `check`, which raises ValueError to refuse them). Raises FileNotFoundError saying where to put the file
    when all of that fails."""
    data_dir = os.environ.get("GPTKIT_DATA")
    if data_dir and (Path(data_dir) / ref.relpath).is_file():
        return Path(data_dir) / ref.relpath
    cached = cache_dir() / ref.relpath
    if cached.is_file():
        return cached
    where = f"{cached}" + (f" or {Path(data_dir) / ref.relpath}" if data_dir else "")
    if download is None:
        raise FileNotFoundError(f"{ref.relpath} not found; put the file from {ref.url} at {where}")
    try:
        data = download(ref.url)
    except OSError as e:
        raise FileNotFoundError(
            f"{ref.relpath} not found locally and downloading {ref.url} failed ({e}); "
            f"download it by hand and put it at {where} (or set GPTKIT_DATA to a folder that has it)"
        ) from None
    if ref.sha256:
        got = hashlib.sha256(data).hexdigest()
        if got != ref.sha256:
            raise ValueError(f"download of {ref.url} has sha256 {got}, expected {ref.sha256}; not saved, try again")
    elif check is None:
        raise ValueError(f"{ref.relpath} has no sha256 and no content check; refusing to keep an unchecked download")
    else:
        check(data)
    atomic_write_bytes(cached, data)
    return cached


def read_text(path: str | os.PathLike, errors: str = "strict") -> str:
    """Read a UTF-8 file; invalid UTF-8 raises ValueError naming the file and the byte offset."""
    return "".join(iter_text_blocks(path, errors=errors, block_bytes=1 << 30))


def _safe_cut(text: str) -> int:
    """Index after the last newline that sits between two non-space characters, or -1.

    Regex pre-tokenizers (GPT-2, GPT-4) never join chunks across such a newline, so cutting there
    gives the same chunks as splitting the whole text. Example: "ab\\ncd\\n  ef" -> 3
    """
    i = len(text) - 1
    while True:
        i = text.rfind("\n", 0, i)
        if i <= 0:
            return -1
        if i + 1 < len(text) and not text[i - 1].isspace() and not text[i + 1].isspace():
            return i + 1


def iter_text_blocks(path: str | os.PathLike, errors: str = "strict", block_bytes: int = 1 << 22) -> Iterator[str]:
    """Yield a UTF-8 file's text in blocks of about `block_bytes`, cut only where `_safe_cut` allows,
    so memory stays bounded however big the file is. Concatenated, the blocks are the whole text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
    pending = ""
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(block_bytes)
            held = len(decoder.getstate()[0])  # bytes of a split character carried from the last block
            try:
                pending += decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}: not valid UTF-8 at byte offset {offset - held + e.start} ({e.reason}); "
                    "convert the file to UTF-8, or pass errors='replace' (--errors replace) to substitute U+FFFD"
                ) from None
            offset += len(raw)
            if not raw:
                break
            cut = _safe_cut(pending)
            if cut > 0:
                yield pending[:cut]
                pending = pending[cut:]
    if pending:
        yield pending
