"""`gptkit prepare`: text (files, folders, globs, jsonl, parquet, a named dataset) into token files.
"""

from __future__ import annotations

import argparse
import os

from gptkit.cli.common import add_errors, add_quiet, add_tokenizer, tokenizer_spec, whole_number

# -- gptkit prepare ---------------------------------------------------------------------------------


def add_prepare_command(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize text into train/val token files",
                       description="Tokenize text into train/val token files (nanoGPT's .bin format) and meta.json.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="text, .jsonl or .parquet files (a web corpus such as FineWeb-Edu), folders of them, globs, "
                   "or a named dataset (shakespeare)")
    add_tokenizer(p, help="char, gpt2, cl100k_base, a saved tokenizer file, or a run dir or HF folder (its own "
                  "tokenizer; with --chat also its own chat template)", convert=False)
    p.add_argument("-o", "--output", required=True, help="the data dir to write")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the characters kept for val")
    p.add_argument("--field", default="text", help="the JSONL field or parquet column holding the text")
    p.add_argument("--shard-tokens", type=_count, default=0,
                   help="tokens per shard file, e.g. 100M (build-nanogpt's shards); 0: one file per split")
    p.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")
    p.add_argument("--workers", type=whole_number(1), default=None, help="tokenizing processes (default: all cores)")
    p.add_argument("--chat", action="store_true",
                   help="the sources are conversations (JSONL: OpenAI's messages, or prompt/completion pairs): ChatML "
                   "tokens with an assistant-only loss mask, for supervised finetuning")
    p.add_argument("--skip-bad", action="store_true", help="with --chat: leave malformed rows out (counted) instead of "
                   "stopping at the first")
    add_errors(p)
    add_quiet(p)
    p.set_defaults(func=cmd_prepare)


def _count(text: str) -> int:
    """A count with an optional K/M/B suffix. Example: "100M" -> 100_000_000"""
    scale = {"k": 10**3, "m": 10**6, "b": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 1000000 or 100M)") from None
    if not value.is_integer() or value < 0:
        raise argparse.ArgumentTypeError(f"not a whole count >= 0: {text!r}")
    return int(value)


def cmd_prepare(args) -> int:
    from gptkit.data.prepare import prepare

    folder, args.tokenizer = args.tokenizer, _tokenizer_spec(args.tokenizer)
    if args.chat:
        return _prepare_chat(args, folder)
    if args.skip_bad:
        raise ValueError("--skip-bad goes with --chat (text has no rows to skip)")
    meta = prepare(
        args.sources, args.tokenizer, args.output, val_fraction=args.val_fraction, field=args.field,
        shard_tokens=args.shard_tokens, dtype=args.dtype, num_workers=args.workers, errors=args.errors,
        progress=not args.quiet, command=" ".join(["gptkit", *args.argv]),
    )
    s = meta["splits"]
    print(f"wrote {args.output}: train {s['train']['tokens']:,} tokens, val {s['val']['tokens']:,} tokens "
          f"({meta['dtype']}, vocab {meta['tokenizer']['vocab_size']:,}) in {meta['seconds']:.1f} s")
    return 0


def _tokenizer_spec(value: str) -> str:
    try:
        return tokenizer_spec(value)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--tokenizer {value}: {e}") from None


def _prepare_chat(args, folder: str) -> int:
    """Conversations: in the chat format of the model whose folder -t names (a run finetuned on chat, an HF folder
    with a chat template), else in ChatML."""
    from gptkit.data.chat import prepare_chat

    fmt = None
    if os.path.isdir(folder):
        from gptkit.training.source import source_chat_format

        fmt = source_chat_format(folder)
    meta = prepare_chat(args.sources, args.tokenizer, args.output, val_fraction=args.val_fraction,
                        skip_bad=args.skip_bad, fmt=fmt, command=" ".join(["gptkit", *args.argv]))
    c, s = meta["chat"], meta["splits"]
    skipped = f"; {c['skipped']} bad rows left out (first: {c['first_skipped'][0]})" if c["skipped"] else ""
    print(f"wrote {args.output}: {c['conversations']['train']:,} conversations ({s['train']['tokens']:,} tokens) for "
          f"train, {c['conversations']['val']:,} ({s['val']['tokens']:,}) for val, "
          f"{'ChatML' if c['format'] == 'chatml' else 'the chat template of ' + folder}, vocab "
          f"{meta['tokenizer']['vocab_size']:,}{skipped}")
    return 0
