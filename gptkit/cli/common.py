"""What several `gptkit` subcommands share: their common flags (each defined once), the parser class that makes an
unknown flag the subcommand's own usage error, and the check for PyTorch.

No subcommand lives here, and nothing here calls the library.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys


def add_errors(p: argparse.ArgumentParser) -> None:
    p.add_argument("--errors", choices=["strict", "replace"], default="strict", help="what to do with invalid UTF-8")


def whole_number(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= minimum (and <= maximum, if given), or a usage error saying so.

    Example: whole_number(1)("0") -> error "must be >= 1, got 0"; whole_number(1, 9)("10") -> "must be from 1 to 9"
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def non_empty(what: str):
    """An argparse type: text that is not blank, or a usage error naming `what` it should be.

    Example: non_empty("a host name or address")("") -> error "must be a host name or address, got ''"
    """

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return text

    return parse


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_checkpoint(p: argparse.ArgumentParser, default: str | None = None,
                   help: str = "default: best if the run has one") -> None:
    p.add_argument("--checkpoint", choices=["best", "last"], default=default, help=help)


def add_quantize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: weight-only int8 for every linear layer, the head included (faster decoding "
                        "at batch 1; the measured figures are in docs/generation.md)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")


def add_tokenizer(p: argparse.ArgumentParser,
                  help: str = "gpt2, cl100k_base, char (built from the input), a saved file, or a run dir or HF "
                  "folder (its own tokenizer)", convert: bool = True) -> None:
    """-t/--tokenizer; with convert=False the value stays as given (a caller that reads a folder's other files)."""
    p.add_argument("--tokenizer", "-t", default="gpt2", type=tokenizer_spec if convert else str, help=help)


def tokenizer_spec(spec: str) -> str:
    """A -t value as the tokenizer layer takes it: a run dir or HF folder becomes the spec of its own tokenizer (the
    file it lives in, or the published encoding it is), so data is tokenized the way a model was trained."""
    if not os.path.isdir(spec):
        return spec
    from gptkit.training.source import source_tokenizer_spec

    try:
        return source_tokenizer_spec(spec)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(" ".join(str(e).split())) from None


def add_input(p: argparse.ArgumentParser) -> None:
    """FILE or --text, read as UTF-8 under --errors."""
    p.add_argument("file", nargs="?", help="input file; '-' or nothing reads standard input")
    p.add_argument("--text", help="use this text instead of a file")
    add_errors(p)


def need_torch(command: str) -> None:
    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"`gptkit {command}` needs PyTorch; install it with `pip install torch` "
                         "(CPU only: `pip install torch --index-url https://download.pytorch.org/whl/cpu`)")


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an unrecognized argument is its own usage error (`usage: gptkit train ...`,
    `gptkit train: error: ...`, exit 2) rather than the top level's. `unknown_hint(extra)` may add a hint.
    Flags are spelled with dashes; the same flag with underscores is taken too (`--val_fraction` = `--val-fraction`),
    as train takes its config fields both ways."""

    def __init__(self, *args, unknown_hint=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.unknown_hint = unknown_hint

    def parse_known_args(self, args=None, namespace=None):
        args = [self.dashed(a) for a in (sys.argv[1:] if args is None else args)]
        namespace, extra = super().parse_known_args(args, namespace)
        if extra:
            hint = self.unknown_hint(extra) if self.unknown_hint else ""
            self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
        return namespace, extra

    def dashed(self, arg: str) -> str:
        """`--a_b[=V]` -> `--a-b[=V]` when only the dashed flag is this parser's. Example: "--val_fraction=0.2" ->
        "--val-fraction=0.2" for prepare; "--max_iters=5" stays (train has both)"""
        flag, eq, value = arg.partition("=")
        flags = self._option_string_actions  # argparse's table of this parser's option strings
        if flag.startswith("--") and "_" in flag and flag not in flags and flag.replace("_", "-") in flags:
            return flag.replace("_", "-") + eq + value
        return arg
