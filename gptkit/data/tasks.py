"""Built-in chat sets that gptkit makes itself, offline, so a user can watch supervised finetuning work on a laptop:

- `reverse`: "Reverse: word" -> "drow", a task with one right answer (nanochat's SpellingBee is of this kind),
  over words of tiny Shakespeare, in its characters only, so a char run of it can learn it. The held-out
  conversations use words the training ones never do: accuracy on them is generalisation, not recall.
- `dialogue`: tiny Shakespeare as conversations: one speaker's lines as the user's turn, the next speaker's reply as
  the assistant's (style, not checkable).

`write_task(name, path)` writes a task's JSONL (OpenAI's messages format): training conversations first, then the
held-out ones, the last `HELD_OUT` of the rows, which is what `gptkit prepare --chat --val-fraction` takes as val.
`held_out(name)` gives those for `gptkit eval --chat`. Everything is seeded: the same rows on every machine.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from gptkit.data.named import dataset_path
from gptkit.files import atomic_write_text

HELD_OUT = 0.1  # the fraction of a task's conversations held out (prepare's default --val-fraction)
SEED = 1337


def _words() -> list[str]:
    """Tiny Shakespeare's distinct lowercase words of 3 to 8 letters, sorted."""
    text = dataset_path("shakespeare").read_text(encoding="utf-8")
    return sorted({w for w in re.findall(r"(?<![A-Za-z])[a-z]+(?![A-Za-z])", text) if 3 <= len(w) <= 8})


def reverse_rows(n: int = 5000) -> list[dict]:
    """`n` reversal conversations, the last HELD_OUT of them on words no earlier one uses.

    Example row: {"messages": [{"role": "user", "content": "Reverse: night"}, {"role": "assistant", "content":
    "thgin"}]}"""
    words = _words()
    random.Random(SEED).shuffle(words)
    cut = int(len(words) * (1 - HELD_OUT))
    rng = random.Random(SEED + 1)
    n_val = round(n * HELD_OUT)
    picks = [rng.choice(words[:cut]) for _ in range(n - n_val)] + [rng.choice(words[cut:]) for _ in range(n_val)]
    return [{"messages": [{"role": "user", "content": f"Reverse: {w}"}, {"role": "assistant", "content": w[::-1]}]}
            for w in picks]


def dialogue_rows() -> list[dict]:
    """Consecutive speeches of tiny Shakespeare as (user, assistant) turns, in the play's order."""
    text = dataset_path("shakespeare").read_text(encoding="utf-8")
    blocks = [b.strip() for b in text.split("\n\n")]
    speeches = [b.split("\n", 1)[1].strip() for b in blocks if "\n" in b and b[:1].isupper()]
    return [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
            for a, b in zip(speeches[::2], speeches[1::2]) if a and b]


TASKS = {"reverse": reverse_rows, "dialogue": dialogue_rows}


def held_out(name: str) -> list[dict]:
    """The held-out conversations of a task (the rows `gptkit prepare --chat` puts in val)."""
    rows = _rows(name)
    return rows[len(rows) - round(len(rows) * HELD_OUT):]


def _rows(name: str) -> list[dict]:
    if name not in TASKS:
        raise ValueError(f"unknown chat task {name!r}; the built-in ones are {', '.join(TASKS)}")
    return TASKS[name]()


def write_task(name: str, path: str | os.PathLike) -> Path:
    """The task's conversations as a JSONL file at `path` (written atomically); returns the path."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in _rows(name)))
    return Path(path)
