"""Every tokenizer gptkit knows, by file or by name: `load_tokenizer(path)` (a saved bpe, char or word tokenizer, or
a HF tokenizer.json),
`get_tokenizer(spec)` (a published encoding's name or a saved file), and `tokenizer_from_record(record, base)` (the
tokenizer a data dir's meta.json or a run's config.json records).

The one module above the concrete tokenizers (gptkit.tokenizer, gptkit.simple_tokenizers); none of them imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

from gptkit.pretrained import PRETRAINED
from gptkit.simple_tokenizers import CharTokenizer, WordTokenizer
from gptkit.tokenizer import Tokenizer
from gptkit.tokenizer_files import read_header
from gptkit.tokenizer_json import parse_char_json, read_tokenizer_json

CLASSES = {"bpe": Tokenizer, "char": CharTokenizer, "word": WordTokenizer}  # by the type line of a saved file


def load_tokenizer(path: str | os.PathLike) -> Tokenizer | CharTokenizer | WordTokenizer:
    """Load any tokenizer written by a gptkit `save` (bpe, char or word), checking the version line, or a Hugging
    Face tokenizer.json (byte-level BPE)."""
    with open(path, "rb") as f:
        is_json = f.read(1) == b"{"
    if is_json:
        chars = parse_char_json(read_tokenizer_json(path))  # what `gptkit export` writes for a char tokenizer
        return CharTokenizer(chars) if chars else Tokenizer.from_tokenizer_json(path)
    kind, lines = read_header(path)
    if kind not in CLASSES:
        lines.fail(f"unknown tokenizer type {kind!r}; expected {', '.join(CLASSES)}")
    return CLASSES[kind].from_lines(lines)


def get_tokenizer(spec: str) -> Tokenizer | CharTokenizer | WordTokenizer:
    """A tokenizer from a CLI-style spec: 'gpt2', 'r50k_base', 'cl100k_base', or the path of a saved tokenizer."""
    if spec in PRETRAINED:
        return Tokenizer.from_pretrained(spec)
    if os.path.exists(spec):
        return load_tokenizer(spec)
    raise ValueError(f"unknown tokenizer {spec!r}: use one of {', '.join(PRETRAINED)} or the path of a saved tokenizer")


def tokenizer_from_record(record: dict, base: str | os.PathLike) -> Tokenizer | CharTokenizer | WordTokenizer:
    """The tokenizer a data dir or run dir records as {"spec", "file", ...}: its file (relative to base) when it
    has one (char, trained BPE), else the published encoding named by spec."""
    return load_tokenizer(Path(base) / record["file"]) if record["file"] else get_tokenizer(record["spec"])
