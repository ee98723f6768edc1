"""HellaSwag examples: reading the published jsonl and turning an example into the four rows a model scores.

The format (github.com/rowanz/hellaswag, data/hellaswag_{train,val,test}.jsonl): one JSON object per line
with at least `ctx` (the context), `endings` (four candidate continuations) and `label` (the index of the
right one; the test split has no labels). Scoring follows build-nanogpt's hellaswag.py: each row is the
context's tokens followed by " " + ending's tokens, and only the ending's tokens are scored (see
gptkit.torch.evaluate.hellaswag). No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gptkit.files import RefFile

# The published validation split (10,042 examples). The dataset publishes no checksum, so a download is
# checked by content instead: every line must parse as an example and the count must be VAL_EXAMPLES.
VAL = RefFile("hellaswag/hellaswag_val.jsonl",
              "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl", "")
VAL_EXAMPLES = 10042


def parse_example(line: str, where: str) -> dict:
    """One jsonl line -> {"ctx", "endings", "label"}, or a ValueError naming the line and what is missing."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a JSON line ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a HellaSwag line is a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("ctx", "endings", "label") if k not in obj]
    if missing:
        raise ValueError(f"{where}: HellaSwag line without {', '.join(map(repr, missing))} (fields: {sorted(obj)}); "
                         "use the labelled val or train file (the test split has no labels)")
    ctx, endings, label = obj["ctx"], obj["endings"], obj["label"]
    if not isinstance(ctx, str) or not (isinstance(endings, list) and len(endings) == 4
                                        and all(isinstance(e, str) for e in endings)):
        raise ValueError(f"{where}: 'ctx' must be a string and 'endings' a list of 4 strings")
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 4:
        raise ValueError(f"{where}: 'label' must be 0, 1, 2 or 3, got {obj['label']!r}")
    return {"ctx": ctx, "endings": endings, "label": label}


def load_examples(path: str | os.PathLike, limit: int = 0) -> list[dict]:
    """The examples of a HellaSwag jsonl file (the first `limit`, when > 0)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                out.append(parse_example(line, f"{path}:{lineno}"))
                if limit and len(out) >= limit:
                    break
    if not out:
        raise ValueError(f"{path}: no HellaSwag examples in the file")
    return out


def _check_val(raw: bytes) -> None:
    """A downloaded val split must parse line by line and hold VAL_EXAMPLES examples (no published checksum)."""
    lines = [ln for ln in raw.decode("utf-8").splitlines() if ln.strip()]
    for k, line in enumerate(lines, 1):
        parse_example(line, f"{VAL.url}:{k}")
    if len(lines) != VAL_EXAMPLES:
        raise ValueError(f"{VAL.url} gave {len(lines):,} examples, expected {VAL_EXAMPLES:,}; not saved, try again")


def find_file(spec: str, download=None) -> Path:
    """A jsonl path as given, or "val": found like any reference file ($GPTKIT_DATA/hellaswag/..., the user cache,
    else downloaded there, see gptkit.files.find_reference_file) and checked by content (see VAL)."""
    if spec != "val":
        if not Path(spec).is_file():
            raise FileNotFoundError(f"{spec}: no such HellaSwag file (give a .jsonl path, or 'val' for the published "
                                    "validation split)")
        return Path(spec)
    from gptkit.files import download_bytes, find_reference_file

    try:
        return find_reference_file(VAL, download or download_bytes, check=_check_val)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; or pass --hellaswag FILE.jsonl") from None


def render(example: dict, tok, block_size: int) -> tuple[list[list[int]], list[int]]:
    """The four token rows (context + " " + ending) and, for each, where its ending starts.

    A row longer than block_size loses context tokens from the left; the ending is always kept whole
    (an ending longer than block_size - 1 tokens cannot be scored and raises ValueError).
    """
    ctx = tok.encode_ordinary(example["ctx"])
    rows, starts = [], []
    for ending in example["endings"]:
        end = tok.encode_ordinary(" " + ending)
        if len(end) >= block_size:
            raise ValueError(f"a HellaSwag ending has {len(end)} tokens; the model's block_size is {block_size}")
        keep = ctx[max(0, len(ctx) + len(end) - block_size):]
        rows.append(keep + end)
        starts.append(len(keep))
    return rows, starts
