"""The benchmarks' corpus: local public text (the shared reference texts, Python's standard library
sources, Debian's documentation files) concatenated up to a size and cached in the temp folder."""

from __future__ import annotations

import os
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GPTKIT_DATA") or REPO.parent / "shared" / "data")


def build_corpus(target_mb: int) -> Path:
    out = Path(tempfile.gettempdir()) / f"gptkit-bench-corpus-{target_mb}mb.txt"
    if out.exists():
        return out
    sources = [DATA / "tinyshakespeare.txt", DATA / "taylorswift.txt", DATA / "the-verdict.txt"]
    sources += sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    sources += sorted(p for p in Path("/usr/share/doc").rglob("*") if p.is_file() and p.suffix not in {".gz", ".xz"})
    target, size = target_mb * 1_000_000, 0
    with open(out.with_suffix(".tmp"), "w", encoding="utf-8") as f:
        for p in sources:
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            f.write(text + "\n")
            size += len(text.encode()) + 1
            if size >= target:
                break
    os.replace(out.with_suffix(".tmp"), out)
    return out
