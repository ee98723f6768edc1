"""The files a tokenizer lives in: gptkit's own text format (a version line, the type, then the type's body), the
`.vocab` view of a BPE tokenizer's merges, and tiktoken's `.tiktoken` ranks.

Functions here read and write plain data (patterns, byte tokens, special tokens, merges, ranks); building a
tokenizer from them is the tokenizer classes' job (gptkit.tokenizer.byte_level, gptkit.tokenizer.simple), and choosing
the class for a file is gptkit.tokenizer.load'. Stdlib only.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

from gptkit.files import atomic_write_text

FORMAT_LINE = "gptkit tokenizer v1"
TOKENIZER_FILE = "tokenizer.model"  # the name a data dir and a run dir keep their tokenizer under


def render_token(t: bytes) -> str:
    """Printable form of a token's bytes: invalid UTF-8 as U+FFFD, control characters escaped.

    Example: b"a\\n" -> "a\\\\u000a"
    """
    s = t.decode("utf-8", errors="replace")
    return "".join(f"\\u{ord(c):04x}" if (ord(c) < 32 or 127 <= ord(c) < 160) else c for c in s)


class Lines:
    """A cursor over a saved tokenizer's lines; every error names the file and the line."""

    def __init__(self, path, text: str) -> None:
        self.path, self.lines, self.i = path, text.split("\n"), 0
        if self.lines and self.lines[-1] == "":
            self.lines.pop()

    def fail(self, msg: str):
        raise ValueError(f"{self.path}:{self.i}: {msg}")

    def next(self) -> str:
        if self.i >= len(self.lines):
            self.i += 1
            self.fail("file ends early; it is truncated or not a gptkit tokenizer")
        self.i += 1
        return self.lines[self.i - 1]

    def field(self, key: str) -> str:
        line = self.next()
        k, _, v = line.partition(" ")
        if k != key:
            self.fail(f"expected a '{key} ...' line, got {line[:60]!r}")
        return v

    def count(self, key: str) -> int:
        return self.ints(self.field(key), 1)[0]

    def ints(self, s: str, n: int) -> list[int]:
        try:
            vals = [int(x) for x in s.split()]
        except ValueError:
            vals = []
        if len(vals) != n:
            self.fail(f"expected {n} integer(s), got {s[:60]!r}")
        return vals

    def json_value(self, key: str):
        try:
            return json.loads(self.field(key))
        except json.JSONDecodeError as e:
            self.fail(f"bad JSON ({e})")

    def json_str(self, s: str | None = None, what: str = "a JSON string") -> str:
        """Parse `s` (default: the next line) as a JSON string, or fail naming the line."""
        line = self.next() if s is None else s
        try:
            val = json.loads(line)
        except json.JSONDecodeError:
            val = None
        if not isinstance(val, str):
            self.fail(f"expected {what}, got {line[:60]!r}")
        return val

    def json_and_int(self) -> tuple[str, int]:
        s, _, i = self.next().rpartition(" ")
        return self.json_str(s, "a JSON string and an id"), self.ints(i, 1)[0]

    def more(self) -> bool:
        """Whether lines are left (for an optional last line)."""
        return self.i < len(self.lines)

    def end(self) -> None:
        if self.i != len(self.lines):
            self.i += 1
            self.fail("unexpected extra lines after the end of the tokenizer")


def read_header(path: str | os.PathLike) -> tuple[str, Lines]:
    """(type, a cursor at the type's body) of a saved gptkit tokenizer, checking the version line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a gptkit tokenizer file (not UTF-8 text)") from None
    lines = Lines(path, text)
    first = lines.next() if lines.lines else ""
    if first != FORMAT_LINE:
        if first.startswith("gptkit tokenizer"):
            lines.fail(f"unsupported version {first!r}; this gptkit reads {FORMAT_LINE!r}")
        lines.fail(f"not a gptkit tokenizer file (first line should be {FORMAT_LINE!r}, got {first[:40]!r})")
    return lines.field("type"), lines


def write_bpe(path: str | os.PathLike, pattern: str | None, byte_tokens: list[bytes] | None,
              specials: dict[str, int], merges: list[tuple[int, int]]) -> None:
    """Write a BPE tokenizer: byte_tokens None means byte i is token i (the usual case)."""
    lines = [
        FORMAT_LINE,
        "type bpe",
        f"pattern {json.dumps(pattern)}",
        "bytes identity" if byte_tokens is None else "bytes " + " ".join(str(t[0]) for t in byte_tokens),
        f"special {len(specials)}",
        *(f"{json.dumps(s)} {i}" for s, i in sorted(specials.items(), key=lambda kv: kv[1])),
        f"merges {len(merges)}",
        *(f"{a} {b}" for a, b in merges),
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def parse_bpe(lines: Lines) -> tuple[str | None, list[bytes] | None, dict[str, int], list[tuple[int, int]]]:
    """(pattern, byte tokens or None for identity, special tokens, merges) of a BPE body, every error naming its
    line; the merges are checked to refer only to tokens made before them."""
    pattern = lines.json_value("pattern")
    byte_spec = lines.field("bytes")
    byte_tokens = None
    if byte_spec != "identity":
        vals = lines.ints(byte_spec, 256)
        if sorted(vals) != list(range(256)):
            lines.fail("'bytes' must list each byte 0..255 exactly once")
        byte_tokens = [bytes([v]) for v in vals]
    specials = dict(lines.json_and_int() for _ in range(lines.count("special")))
    merges = []
    for k in range(lines.count("merges")):
        a, b = lines.ints(lines.next(), 2)
        if not (0 <= a < 256 + k and 0 <= b < 256 + k):
            lines.fail(f"merge ({a}, {b}) refers to a token that does not exist yet (merge {k} makes id {256 + k})")
        merges.append((a, b))
    return pattern, byte_tokens, specials, merges


def vocab_path(path: str | os.PathLike) -> Path:
    """Where the .vocab view of a tokenizer saved at path goes. Example: "tok.model" -> "tok.vocab"."""
    path = Path(path)
    return path.with_suffix(".vocab") if path.suffix != ".vocab" else path.with_suffix(".vocab.txt")


def vocab_view(token_bytes: Mapping[int, bytes], merges: list[tuple[int, int]], specials: dict[str, int]) -> str:
    """The merge tree, one token a line: `[t][he] -> [the] 1234`, then the special tokens (token_bytes: id -> bytes)."""
    lines = [f"[{render_token(token_bytes[i])}] {i}" for i in range(256)]
    for k, (a, b) in enumerate(merges):
        da, db = token_bytes[a], token_bytes[b]
        lines.append(f"[{render_token(da)}][{render_token(db)}] -> [{render_token(da + db)}] {256 + k}")
    lines += [f"special [{s}] {i}" for s, i in sorted(specials.items(), key=lambda kv: kv[1])]
    return "\n".join(lines) + "\n"


def write_tiktoken_ranks(path: str | os.PathLike, ranks: dict[bytes, int]) -> None:
    """tiktoken's ranks format: `base64(token) rank` per line, in rank order."""
    lines = (f"{base64.b64encode(t).decode()} {i}" for t, i in sorted(ranks.items(), key=lambda kv: kv[1]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Parse tiktoken's ranks format; a bad line raises ValueError naming the file and line."""
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tok, rank = line.split()
                ranks[base64.b64decode(tok, validate=True)] = int(rank)
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: not a tiktoken ranks line (expected '<base64 token> <rank>'): {line[:60]!r}"
                ) from None
    if not ranks:
        raise ValueError(f"{path}: no ranks in file; is it a .tiktoken file?")
    return ranks
