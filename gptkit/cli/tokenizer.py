"""`gptkit tokenizer train|encode|decode|show|stats`: each action's arguments next to the function that runs it.

The tokenizer modules are imported inside the actions, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptkit.cli.common import add_errors, add_input, add_quiet, add_tokenizer, whole_number


def add_tokenizer_command(sub) -> None:
    """`gptkit tokenizer ACTION ...` on the top-level subparsers `sub`."""
    tp = sub.add_parser("tokenizer", help="train, run and inspect tokenizers", description="Tokenizers.")
    tsub = tp.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    _add_train(tsub)
    _add_text_action(tsub, "encode", cmd_tokenizer_encode, "print the token ids of a text")
    show = _add_text_action(tsub, "show", cmd_tokenizer_show, "show a text with its token boundaries")
    show.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    show.add_argument("--ids", action="store_true", help="also print the ids")
    _add_text_action(tsub, "stats", cmd_tokenizer_stats, "count tokens and bytes per token of a text")
    _add_decode(tsub)


def _read_input(args) -> str:
    """The text of --text, or of FILE ('-' or nothing: standard input)."""
    if getattr(args, "text", None) is not None:
        return args.text
    if args.file in (None, "-"):
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8", errors=args.errors)
        except UnicodeDecodeError as e:
            raise ValueError(
                f"standard input is not valid UTF-8 at byte offset {e.start}; pass --errors replace"
            ) from None
    from gptkit.files import read_text

    return read_text(args.file, errors=args.errors)


def _tokenizer_for(spec: str, text: str | None = None):
    """`char` is built from the text at hand (nanoGPT's shakespeare_char); anything else by name or path."""
    if spec == "char":
        if text is None:
            raise ValueError("--tokenizer char has no fixed vocabulary to decode with; pass a saved tokenizer file")
        from gptkit.tokenizer.simple import CharTokenizer

        return CharTokenizer.train(text)
    from gptkit.tokenizer.load import get_tokenizer

    return get_tokenizer(spec)


def _encode(tok, text: str, args) -> list[int]:
    """Encode with --allowed-special ("all" or comma-separated tokens); the API's hint becomes the flag's."""
    if args.allowed_special is None:
        allowed = frozenset()
    elif args.allowed_special == "all":
        allowed = "all"
    else:
        allowed = set(args.allowed_special.split(","))
    try:
        return tok.encode(text, allowed_special=allowed)
    except ValueError as e:
        first = str(e).split("\n")[0]
        if "disallowed special token" in first:
            raise ValueError(f"{first} Pass --allowed-special all (or a comma-separated list) to encode it as "
                             "one.") from None
        raise


def _add_text_action(tsub, name: str, func, help_: str) -> argparse.ArgumentParser:
    """An action that tokenizes one text (encode, show, stats): FILE/--text, --tokenizer, --allowed-special."""
    p = tsub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
    add_input(p)
    add_tokenizer(p)
    p.add_argument("--allowed-special", metavar="all|TOK,TOK", help="special tokens to encode as such (default: none)")
    p.set_defaults(func=func)
    return p


def _add_train(tsub) -> None:
    p = tsub.add_parser("train", help="train a tokenizer on text files", description="Train a tokenizer.")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files, or a named dataset (shakespeare)")
    p.add_argument("-o", "--output", required=True, help="where to save it (a .vocab view is written beside)")
    p.add_argument("--type", choices=["bpe", "char", "word"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=None, help="bpe: total tokens incl. 256 bytes and specials "
                   "(default 4096); char and word vocabularies come from the text")
    p.add_argument("--pattern", default="gpt4", help="split pattern: gpt2, gpt4, none, or a regex")
    p.add_argument("--special", action="append", default=[], help="a special token (repeatable)")
    p.add_argument("--workers", type=whole_number(1), default=1, help="processes counting chunks")
    add_errors(p)
    add_quiet(p)
    p.set_defaults(func=cmd_tokenizer_train)


def cmd_tokenizer_train(args) -> int:
    from gptkit.data.named import resolve_source
    from gptkit.files import iter_text_blocks
    from gptkit.tokenizer.byte_level import Tokenizer
    from gptkit.tokenizer.simple import CharTokenizer, WordTokenizer

    if args.type != "bpe" and args.vocab_size is not None:
        raise ValueError(f"--vocab-size applies to --type bpe; a {args.type} vocabulary is every {args.type} of "
                         "the text")
    paths = [resolve_source(f) for f in args.files]

    def texts():
        for p in paths:
            yield from iter_text_blocks(p, errors=args.errors)

    pattern = None if args.pattern == "none" else args.pattern
    if args.type == "bpe":
        tok = Tokenizer.train(
            texts(), args.vocab_size or 4096, pattern, args.special, num_workers=args.workers, progress=not args.quiet
        )
    else:
        tok = (CharTokenizer if args.type == "char" else WordTokenizer).train(texts())
    tok.save(args.output)
    print(f"saved {tok!r} to {args.output}")
    if args.type == "bpe":
        print(f"merge tree: {Path(args.output).with_suffix('.vocab')}")
    return 0


def cmd_tokenizer_encode(args) -> int:
    text = _read_input(args)
    tok = _tokenizer_for(args.tokenizer, text)
    ids = _encode(tok, text, args)
    sys.stdout.write(" ".join(map(str, ids)) + "\n")
    return 0


def _add_decode(tsub) -> None:
    p = tsub.add_parser("decode", help="turn ids back into text", description="Decode whitespace-separated ids.")
    add_input(p)
    add_tokenizer(p)
    p.set_defaults(func=cmd_tokenizer_decode)


def cmd_tokenizer_decode(args) -> int:
    tok = _tokenizer_for(args.tokenizer)
    raw = _read_input(args)
    try:
        ids = [int(x) for x in raw.split()]
    except ValueError as e:
        raise ValueError(f"decode reads whitespace-separated integer ids; {e}") from None
    sys.stdout.write(tok.decode(ids))
    return 0


_COLORS = [194, 223, 189, 225, 158, 230]  # pale 256-color backgrounds, cycled token by token


def cmd_tokenizer_show(args) -> int:
    from gptkit.tokenizer.formats import render_token

    text = _read_input(args)
    tok = _tokenizer_for(args.tokenizer, text)
    ids = _encode(tok, text, args)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    out = []
    for k, i in enumerate(ids):
        piece = render_token(tok.token_bytes(i)).replace("\\u000a", "\\n\n")
        if color:
            out.append(f"\x1b[48;5;{_COLORS[k % len(_COLORS)]}m\x1b[30m{piece}\x1b[0m")
        else:
            out.append(f"[{piece}]")
    sys.stdout.write("".join(out) + "\n")
    if args.ids:
        sys.stdout.write(" ".join(map(str, ids)) + "\n")
    return 0


def cmd_tokenizer_stats(args) -> int:
    text = _read_input(args)
    tok = _tokenizer_for(args.tokenizer, text)
    ids = _encode(tok, text, args)
    n_bytes = len(text.encode("utf-8"))
    per = n_bytes / len(ids) if ids else 0.0
    print(f"tokenizer        {tok!r}")
    print(f"characters       {len(text):,}")
    print(f"bytes (UTF-8)    {n_bytes:,}")
    print(f"tokens           {len(ids):,}")
    print(f"unique tokens    {len(set(ids)):,} of {tok.vocab_size:,}")
    print(f"bytes per token  {per:.3f}")
    print(f"compression      {per:.2f}x (UTF-8 bytes / tokens)")
    return 0
