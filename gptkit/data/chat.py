"""`gptkit prepare --chat`: conversations into token files plus a loss mask beside them, for supervised finetuning.

Sources are JSONL files (one conversation a line) or parquet files (one a row, SmolTalk's layout) in OpenAI's
finetuning format (`{"messages": [{"role", "content"}, ...]}`, the format of HF chat sets) or as `{"prompt",
"completion"}` pairs (a user turn and the assistant's reply). Each conversation is rendered and tokenized with
gptkit.tokenizer.chat: in ChatML, the tokenizer getting the ChatML tokens appended when it lacks them (vocabulary
extension; `gptkit train --init_from MODEL --data DIR` grows the model to match), or in an HF folder's own chat
template with its tokenizer as it is. The tokenizer is saved in the data dir, and meta.json records the format.

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


def _objects(path: Path) -> Iterator[tuple[str, object]]:
    """(where, row) for each row of a JSONL file (its line) or a parquet file (its row: columns as keys, SmolTalk's
    layout); a JSONL line that is not JSON is ValueError in place of its row, raised when it is reached."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f'{path}: reading parquet needs pyarrow: pip install "gptkit[web]"') from None
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                yield f"{path}: row {row}", obj
        return
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(raw.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield f"{path}:{lineno}", ValueError(f"{path}:{lineno}: not a JSON line ({e})")


def read_conversations(path: str | os.PathLike) -> list[dict]:
    """The conversations of a JSONL or parquet file as {"messages": [...]} rows, or ValueError naming the first bad
    row. What `gptkit eval --chat FILE` scores."""
    rows = []
    for where, obj in _objects(Path(path)):
        if isinstance(obj, ValueError):
            raise obj
        rows.append({"messages": conversation(obj, where)})
    if not rows:
        raise ValueError(f"{path}: no conversation in it")
    return rows


def _rows(paths: list[Path], skip_bad: bool, bad: list[str], tok,
          fmt: ChatFormat) -> Iterator[tuple[list[int], list[int]]]:
    """The (ids, mask) of every conversation of the sources, in order; a bad row (one the tokenizer cannot encode
    too) raises, or with skip_bad is noted in `bad`."""
    for path in paths:
        for where, obj in _objects(path):
            try:
                if isinstance(obj, ValueError):
                    raise obj
                messages = conversation(obj, where)
                try:
                    encoded = encode_chat(tok, fmt, messages)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
            except ValueError as e:
                if not skip_bad:
                    raise ValueError(f"{e}; fix the row, or pass --skip-bad to leave bad rows out") from None
                bad.append(str(e))
                continue
            yield encoded


def chat_sources(specs: list[str]) -> list[Path]:
    """The files of --chat sources (JSONL or parquet files, folders of them, or a built-in task's name: written once
    into the user cache), or ValueError saying what to give."""
    from gptkit.data.tasks import TASKS, write_task
    from gptkit.files import cache_dir

    paths = []
    for spec in specs:
        p = Path(spec)
        if spec in TASKS and not p.exists():
            target = cache_dir() / "chat" / f"{spec}.jsonl"
            paths.append(target if target.is_file() else write_task(spec, target))
            continue
        found = sorted([*p.glob("*.jsonl"), *p.glob("*.parquet")]) if p.is_dir() else [p]
        if not found or not all(f.is_file() for f in found):
            raise FileNotFoundError(f"{spec}: no such JSONL or parquet file, folder of them, or built-in task "
                                    f"({', '.join(TASKS)})")
        paths += found
    return paths


def task_data_dir(task: str, tokenizer: str) -> Path:
    """A built-in chat task's data dir for a tokenizer spec, prepared under the user cache on first use (keyed by the
    tokenizer's fingerprint, so two runs with different tokenizers never share one). What `gptkit train
    --init_from=MODEL --data=reverse` trains on. Example: ("reverse", "runs/x/tokenizer.model") ->
    ~/.cache/gptkit/data/chat-reverse-1a2b3c4d5e6f"""
    from gptkit.data.prepare import load_meta
    from gptkit.files import cache_dir
    from gptkit.tokenizer.load import get_tokenizer

    out = cache_dir() / "data" / f"chat-{task}-{get_tokenizer(tokenizer).fingerprint()[:12]}"
    if not (out / META).is_file():
        prepare_chat([task], tokenizer, out, command=f"gptkit prepare --chat {task} -t {tokenizer} -o {out}")
    load_meta(out)
    return out


def prepare_chat(sources: list[str], tokenizer: str, out_dir: str | os.PathLike, *, val_fraction: float = 0.1,
                 skip_bad: bool = False, fmt: ChatFormat | None = None, command: str | None = None) -> dict:
    """Render, tokenize and write the conversations of `sources` into `out_dir`; returns meta.json's contents.
    `fmt`: a model's own chat format (ChatFormat.from_hf_folder), rendered with the tokenizer as it is; None:
    ChatML, with its two tokens added to the tokenizer where it lacks them."""
    from gptkit.tokenizer.load import get_tokenizer

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    paths = chat_sources(sources)
    t0, bad = time.perf_counter(), []
    tok = get_tokenizer(tokenizer)
    if fmt is None or fmt.template is None:  # ChatML: its tokens are added where the tokenizer lacks them
        tok, fmt = tok.with_special_tokens([IM_START, IM_END]), ChatFormat.chatml()
    total = sum(1 for _ in _rows(paths, skip_bad, bad, tok, fmt))  # pass 1: check every row, count the good ones
    if not total:
        raise ValueError(f"no conversation to learn from in {', '.join(sources)} ({len(bad)} bad rows)")
    dtype = choose_dtype(tok.vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # until the new meta.json is written, the dir is unfinished
    n_val = max(1, round(total * val_fraction)) if val_fraction and total > 1 else 0
    counts = {"train": [0, 0], "val": [0, 0]}  # conversations, tokens
    temps = [out / f".{s}{ext}.tmp" for s in counts for ext in EXTENSIONS]
    files = {s: [open(out / f".{s}{ext}.tmp", "wb") for ext in EXTENSIONS] for s in counts}
    try:
        for k, (ids, mask) in enumerate(_rows(paths, skip_bad, [], tok, fmt)):  # pass 2: write
            split = "val" if k >= total - n_val else "train"
            np.asarray(ids, dtype=dtype).tofile(files[split][0])
            np.asarray(mask, dtype=np.uint8).tofile(files[split][1])
            np.asarray([counts[split][1]], dtype=np.uint64).tofile(files[split][2])  # where it starts
            counts[split][0] += 1
            counts[split][1] += len(ids)
    except BaseException:  # an error or Ctrl-C part-way leaves no temp files behind
        for f in temps:
            f.unlink(missing_ok=True)
        raise
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
        "chat": {"format": "chatml" if fmt.template is None else "template", "chat_format": fmt.record(),
                 "conversations": {s: c for s, (c, _) in counts.items()}, "skipped": len(bad),
                 "first_skipped": bad[:5]},
        "sources": [{"path": str(p), "bytes": p.stat().st_size} for p in paths],
        "command": command, "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2) + "\n")
    return meta
