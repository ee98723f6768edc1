"""`gptkit prepare --chat`: conversations into token files plus a loss mask beside them, for supervised finetuning.

Sources are JSONL files, one conversation a line, in OpenAI's finetuning format (`{"messages": [{"role",
"content"}, ...]}`, the format of HF chat sets such as SmolTalk) or as `{"prompt", "completion"}` pairs (a user turn
and the assistant's reply). Each conversation is rendered in ChatML and tokenized with gptkit.tokenizer.chat; the
tokenizer gets the ChatML tokens appended when it lacks them (vocabulary extension) and is saved in the data dir, so
`gptkit train --init_from MODEL --data DIR` grows the model to match.

A data dir holds what `gptkit prepare` writes (`train.bin`, `val.bin`, meta.json) plus `train.mask` / `val.mask`:
one uint8 per token, 1 where the token is part of an assistant reply (its content and end-of-turn token), and
`train.idx` / `val.idx`: where each conversation starts (uint64), for gptkit.data.packing's rows of whole
conversations. The loaders turn a 0 into a target of -1, which both backends' losses skip. The last `val_fraction` of
the conversations (whole ones) is the validation split. Two passes over the sources (count and check, then write), in
bounded memory.

A malformed row (not JSON, no messages, an unknown role, content that is no non-empty string, no assistant turn) is
an error naming its file and line; with skip_bad it is counted and left out instead. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gptkit.data.prepare import FORMAT, META, VERSION, choose_dtype
from gptkit.files import atomic_write_text
from gptkit.tokenizer.chat import IM_END, IM_START, ChatFormat, check_messages, encode_chat
from gptkit.tokenizer.formats import TOKENIZER_FILE

MASK_SUFFIX, INDEX_SUFFIX = ".mask", ".idx"  # beside each token file: the loss mask, each conversation's start
EXTENSIONS = (".bin", MASK_SUFFIX, INDEX_SUFFIX)


def conversation(obj, where: str) -> list[dict]:
    """The messages of one row: {"messages": [...]} or {"prompt", "completion"}; ValueError naming `where` when the
    row is not a conversation gptkit can learn from. Example: {"prompt": "2+2", "completion": "4"} -> [user "2+2",
    assistant "4"]"""
    if isinstance(obj, dict) and "messages" in obj:
        messages = obj["messages"]
    elif isinstance(obj, dict) and "prompt" in obj and "completion" in obj:
        messages = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["completion"]}]
    else:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{where}: not a conversation (a JSON object with 'messages', or 'prompt' and 'completion'; "
                         f"got {keys}); plain text is `gptkit prepare` without --chat")
    try:
        messages = check_messages(messages)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant turn, so nothing to learn from")
    return messages


def _rows(paths: list[Path], skip_bad: bool, bad: list[str], tok) -> Iterator[tuple[list[int], list[int]]]:
    """The (ids, mask) of every conversation of the sources, in order; a bad row (one the tokenizer cannot encode
    too) raises, or with skip_bad is noted in `bad`."""
    for path in paths:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    try:
                        obj = json.loads(raw.decode("utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        raise ValueError(f"{where}: not a JSON line ({e})") from None
                    messages = conversation(obj, where)
                    try:
                        encoded = encode_chat(tok, ChatFormat.chatml(), messages)
                    except ValueError as e:
                        raise ValueError(f"{where}: {e}") from None
                except ValueError as e:
                    if not skip_bad:
                        raise ValueError(f"{e}; fix the row, or pass --skip-bad to leave bad rows out") from None
                    bad.append(str(e))
                    continue
                yield encoded


def chat_sources(specs: list[str]) -> list[Path]:
    """The JSONL files of --chat sources (files, folders of *.jsonl, or a built-in task's name: written once into
    the user cache), or ValueError saying what to give."""
    from gptkit.data.tasks import TASKS, write_task
    from gptkit.files import cache_dir

    paths = []
    for spec in specs:
        p = Path(spec)
        if spec in TASKS and not p.exists():
            target = cache_dir() / "chat" / f"{spec}.jsonl"
            paths.append(target if target.is_file() else write_task(spec, target))
            continue
        found = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        if not found or not all(f.is_file() for f in found):
            raise FileNotFoundError(f"{spec}: no such JSONL file, folder of them, or built-in task "
                                    f"({', '.join(TASKS)})")
        paths += found
    return paths


def prepare_chat(sources: list[str], tokenizer: str, out_dir: str | os.PathLike, *, val_fraction: float = 0.1,
                 skip_bad: bool = False, command: str | None = None) -> dict:
    """Render, tokenize and write the conversations of `sources` into `out_dir`; returns meta.json's contents."""
    from gptkit.tokenizer.load import get_tokenizer

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    paths = chat_sources(sources)
    t0, bad = time.perf_counter(), []
    tok = get_tokenizer(tokenizer).with_special_tokens([IM_START, IM_END])
    total = sum(1 for _ in _rows(paths, skip_bad, bad, tok))  # pass 1: check every row, count the good ones
    if not total:
        raise ValueError(f"no conversation to learn from in {', '.join(sources)} ({len(bad)} bad rows)")
    dtype = choose_dtype(tok.vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # until the new meta.json is written, the dir is unfinished
    n_val = max(1, round(total * val_fraction)) if val_fraction and total > 1 else 0
    counts = {"train": [0, 0], "val": [0, 0]}  # conversations, tokens
    files = {s: [open(out / f".{s}{ext}.tmp", "wb") for ext in EXTENSIONS] for s in counts}
    try:
        for k, (ids, mask) in enumerate(_rows(paths, skip_bad, [], tok)):  # pass 2: write
            split = "val" if k >= total - n_val else "train"
            np.asarray(ids, dtype=dtype).tofile(files[split][0])
            np.asarray(mask, dtype=np.uint8).tofile(files[split][1])
            np.asarray([counts[split][1]], dtype=np.uint64).tofile(files[split][2])  # where it starts
            counts[split][0] += 1
            counts[split][1] += len(ids)
    finally:
        for pair in files.values():
            for f in pair:
                f.close()
    for split in counts:
        for ext in EXTENSIONS:
            os.replace(out / f".{split}{ext}.tmp", out / f"{split}{ext}")
    tok.save(out / TOKENIZER_FILE)
    meta = {
        "format": FORMAT, "version": VERSION,
        "tokenizer": {"spec": tokenizer, "file": TOKENIZER_FILE, "vocab_size": tok.vocab_size,
                      "eot_token": tok.eot_token, "fingerprint": tok.fingerprint()},
        "dtype": dtype, "val_fraction": val_fraction,
        "splits": {s: {"tokens": n, "files": [{"name": f"{s}.bin", "tokens": n, "mask": f"{s}{MASK_SUFFIX}",
                                               "index": f"{s}{INDEX_SUFFIX}"}]} for s, (_, n) in counts.items()},
        "chat": {"format": "chatml", "conversations": {s: c for s, (c, _) in counts.items()}, "skipped": len(bad),
                 "first_skipped": bad[:5]},
        "sources": [{"path": str(p), "bytes": p.stat().st_size} for p in paths],
        "command": command, "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2) + "\n")
    return meta
