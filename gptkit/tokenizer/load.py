"""Every tokenizer gptkit knows, by file or by name: `load_tokenizer(path)` (a saved bpe, char or word tokenizer, or
a HF tokenizer.json),
`get_tokenizer(spec)` (a published encoding's name or a saved file), and `tokenizer_from_record(record, base)` (the
tokenizer a data dir's meta.json or a run's config.json records).

The one module above the concrete tokenizers (gptkit.tokenizer.byte_level, gptkit.tokenizer.simple); none of them
imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

from gptkit.tokenizer.byte_level import Tokenizer
from gptkit.tokenizer.encodings import PRETRAINED
from gptkit.tokenizer.formats import read_header
from gptkit.tokenizer.hf_json import parse_char_json, read_tokenizer_json
from gptkit.tokenizer.simple import CharTokenizer, WordTokenizer

CLASSES = {"bpe": Tokenizer, "char": CharTokenizer, "word": WordTokenizer}  # by the type line of a saved file


def load_tokenizer(path: str | os.PathLike) -> Tokenizer | CharTokenizer | WordTokenizer:
    """Load any tokenizer written by a gptkit `save` (bpe, char or word), checking the version line, or a Hugging
    Face tokenizer.json (byte-level BPE)."""
    doc = _json_doc(path)
    if doc is not None:
        char = parse_char_json(doc)  # what `gptkit export` writes for a char tokenizer
        return CharTokenizer(*char) if char else Tokenizer.from_tokenizer_json(path)
    kind, lines = read_header(path)
    if kind not in CLASSES:
        lines.fail(f"unknown tokenizer type {kind!r}; expected {', '.join(CLASSES)}")
    return CLASSES[kind].from_lines(lines)


def _json_doc(path) -> dict | None:
    """The tokenizer.json in `path`: a *.json file must be one; another that starts with "{" is one if it parses
    (Tokenizer.save writes a tokenizer.json-born tokenizer as JSON under any name)."""
    if str(path).endswith(".json"):
        return read_tokenizer_json(path)
    with open(path, "rb") as f:
        if f.read(1) != b"{":
            return None
    try:
        return read_tokenizer_json(path)
    except ValueError:
        return None  # then read_header says what the file is not


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
