"""The `gptkit` command: one dispatcher with subcommands.

Each subcommand's arguments are defined by a small `_add_*` builder next to the `cmd_*` function that runs it, and
`build_parser` only calls the builders (`gptkit tokenizer ...` is in cli_tokenizer, `gptkit train` in cli_train,
the flags several share in cli_common). Each `cmd_*` calls one library function; heavy modules are imported only
inside the subcommand that needs them. A user mistake (ValueError, a missing file) prints one line,
`gptkit: error: ...`, and exits 1; a usage mistake (an unknown flag) prints the subcommand's usage and exits 2;
a traceback means a bug in gptkit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from gptkit.cli.chat import add_chat_command
from gptkit.cli.common import SubcommandParser
from gptkit.cli.eval import add_eval_command
from gptkit.cli.export import add_export_command
from gptkit.cli.prepare import add_prepare_command
from gptkit.cli.sample import add_sample_command
from gptkit.cli.serve import add_serve_command
from gptkit.cli.tokenizer import add_tokenizer_command
from gptkit.cli.train import add_train_command

EXIT_USER_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptkit", description="A GPT toolkit built from scratch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=SubcommandParser)
    add_prepare_command(sub)
    add_tokenizer_command(sub)
    add_train_command(sub)
    add_sample_command(sub)
    add_chat_command(sub)
    add_serve_command(sub)
    add_eval_command(sub)
    add_export_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    old_term = _term_as_interrupt()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            rc = args.func(args)
        for w in caught:
            print(f"gptkit: warning: {w.message}", file=sys.stderr)
        return rc
    except BrokenPipeError:  # the reader went away (`gptkit sample ... | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, what a shell reports for a command its pipe closed
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split("\n")).strip() or type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"{e.filename}: no such file"
        elif isinstance(e, (FileExistsError, NotADirectoryError)) and e.filename:  # mkdir met a file
            msg = (f"{_file_in_the_way(e.filename)}: a file where a folder is needed; give another path, or move "
                   "the file")
        print(f"gptkit: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        print("gptkit: interrupted", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _file_in_the_way(path) -> Path:
    """The first part of `path` that is a file (what stops a mkdir of it). Example: "f.txt/a/b" -> f.txt"""
    p = Path(path)
    return next((q for q in [*reversed(p.parents), p] if q.exists() and not q.is_dir()), p)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and `timeout` send first), handled as Ctrl-C is: clean up, then exit 143."""


def _raise_terminated(signum, frame):
    raise Terminated


def _term_as_interrupt():
    """Make SIGTERM unwind like Ctrl-C (a training run installs its own handler that checkpoints first); returns
    the handler it replaced, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _version() -> str:
    from gptkit import __version__

    return f"gptkit {__version__}"
