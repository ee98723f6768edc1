"""Named text sources: a short name -> a local file, found or downloaded with its sha256.

Stdlib only. `gptkit.data.prepare` turns these texts into token files; this module only finds them.
"""

from __future__ import annotations

from pathlib import Path

from gptkit.files import RefFile, find_reference_file

TINY_SHAKESPEARE = RefFile(
    "tinyshakespeare.txt",
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
)
NAMED = {"shakespeare": TINY_SHAKESPEARE}


def dataset_path(name: str) -> Path:
    """The local path of a named dataset. Example: "shakespeare" -> $GPTKIT_DATA/tinyshakespeare.txt"""
    if name not in NAMED:
        raise ValueError(f"unknown dataset {name!r}; named datasets: {', '.join(NAMED)}")
    return find_reference_file(NAMED[name])


def resolve_source(source: str) -> Path:
    """A path that exists, else a named dataset. Raises FileNotFoundError naming the source."""
    p = Path(source)
    if p.exists():
        if p.is_dir():
            raise ValueError(f"{source} is a folder; give text files (e.g. {source}/*.txt)")
        return p
    if source in NAMED:
        return dataset_path(source)
    raise FileNotFoundError(f"{source}: no such file, and not a named dataset ({', '.join(NAMED)})")
