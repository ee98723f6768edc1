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
import signal
import sys
import threading
import warnings
from pathlib import Path

from gptkit.cli_common import (SubcommandParser, add_checkpoint, add_device, add_errors, add_quiet, add_tokenizer,
                               need_torch, whole_number)
from gptkit.cli_sample import add_sample_command
from gptkit.cli_serve import add_serve_command
from gptkit.cli_tokenizer import add_tokenizer_command
from gptkit.cli_train import add_train_command

EXIT_USER_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptkit", description="A GPT toolkit built from scratch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=SubcommandParser)
    _add_prepare(sub)
    add_tokenizer_command(sub)
    add_train_command(sub)
    add_sample_command(sub)
    add_serve_command(sub)
    _add_eval(sub)
    _add_export(sub)
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
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split("\n")).strip() or type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"{e.filename}: no such file"
        elif isinstance(e, (FileExistsError, NotADirectoryError)) and e.filename:  # mkdir met a file
            msg = f"{_file_in_the_way(e.filename)}: a file where a folder is needed; give another path, or move the file"
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


# -- gptkit prepare ---------------------------------------------------------------------------------


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize text into train/val token files",
                       description="Tokenize text into train/val token files (nanoGPT's .bin format) and meta.json.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="text, .jsonl or .parquet files (a web corpus such as FineWeb-Edu), folders of them, globs, "
                   "or a named dataset (shakespeare)")
    add_tokenizer(p, help="char, gpt2, cl100k_base, or a saved tokenizer file")
    p.add_argument("-o", "--output", required=True, help="the data dir to write")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the characters kept for val")
    p.add_argument("--field", default="text", help="the JSONL field or parquet column holding the text")
    p.add_argument("--shard-tokens", type=_count, default=0,
                   help="tokens per shard file, e.g. 100M (build-nanogpt's shards); 0: one file per split")
    p.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")
    p.add_argument("--workers", type=whole_number(1), default=None, help="tokenizing processes (default: all cores)")
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
    from gptkit.data import prepare

    meta = prepare(
        args.sources, args.tokenizer, args.output, val_fraction=args.val_fraction, field=args.field,
        shard_tokens=args.shard_tokens, dtype=args.dtype, num_workers=args.workers, errors=args.errors,
        progress=not args.quiet, command=" ".join(["gptkit", *args.argv]),
    )
    s = meta["splits"]
    print(f"wrote {args.output}: train {s['train']['tokens']:,} tokens, val {s['val']['tokens']:,} tokens "
          f"({meta['dtype']}, vocab {meta['tokenizer']['vocab_size']:,}) in {meta['seconds']:.1f} s")
    return 0


# -- gptkit eval ------------------------------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="loss/perplexity/bits per byte on a data split; HellaSwag accuracy",
                       description="Evaluate a run, a HF model folder or a GPT-2 name: loss, perplexity and bits per "
                       "byte over a whole data split (--data), and HellaSwag acc / acc_norm (--hellaswag).")
    p.add_argument("model", metavar="MODEL", help="a run dir, a HF GPT-2/Llama/Qwen3 folder, or gpt2 ... gpt2-xl")
    p.add_argument("--data", metavar="DATA_DIR", help="a data dir from `gptkit prepare` (or a named one)")
    p.add_argument("--split", default="val", help="the split of --data to read (default: val)")
    p.add_argument("--max-tokens", type=int, default=0, help="read only the first N tokens of the split (0: all)")
    p.add_argument("--batch-size", type=int, default=8, help="windows of block_size per forward pass")
    p.add_argument("--hellaswag", metavar="FILE.jsonl|val",
                   help="HellaSwag jsonl (published format), or val: the published val split (downloaded if absent)")
    p.add_argument("--limit", type=whole_number(0), default=0, help="score only the first N HellaSwag examples (0: all)")
    add_device(p)
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (autocast)")
    add_checkpoint(p, help="for a run dir; default: best if the run has one")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_quiet(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    need_torch("eval")
    import json

    from gptkit.runtime import pick_device, pick_dtype
    from gptkit.weights import load_model

    if not args.data and not args.hellaswag:
        raise ValueError("nothing to evaluate: give --data DATA_DIR and/or --hellaswag FILE.jsonl (or val)")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    model, src = load_model(args.model, args.checkpoint or "auto", device)
    tok = src.load_tokenizer()
    report = {"model": str(src.path)}
    if args.data:
        from gptkit.data import check_tokenizer, resolve_data_dir
        from gptkit.evaluate import split_loss

        data_dir = resolve_data_dir(args.data)
        check_tokenizer(data_dir, tok, name=f"the model's tokenizer ({src.tokenizer['spec']!r})")
        report[args.split] = split_loss(model, data_dir, args.split, args.batch_size, args.max_tokens, device, dtype,
                                        progress=not args.quiet)
    if args.hellaswag:
        from gptkit.evaluate import hellaswag
        from gptkit.hellaswag import find_file, load_examples

        examples = load_examples(find_file(args.hellaswag), args.limit)
        got = hellaswag(model, tok, examples, device, dtype, progress=not args.quiet)
        report["hellaswag"] = {k: got[k] for k in ("acc", "acc_norm", "examples")}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model: {report['model']}")
    if args.data:
        r = report[args.split]
        print(f"{args.split}: loss {r['loss']:.4f}, perplexity {r['perplexity']:.2f}, bits/byte "
              f"{r['bits_per_byte']:.4f} ({r['tokens']:,} tokens, {r['bytes']:,} bytes)")
    if args.hellaswag:
        h = report["hellaswag"]
        print(f"hellaswag: acc {h['acc']:.4f}, acc_norm {h['acc_norm']:.4f} ({h['examples']:,} examples)")
    return 0


# -- gptkit export ----------------------------------------------------------------------------------


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run as a Hugging Face folder (model + tokenizer)",
                       description="Write a run as a Hugging Face folder that transformers loads unchanged: GPT2LMHeadModel, "
                                   "LlamaForCausalLM or Qwen3ForCausalLM by the run's options, with tokenizer.json.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=["hf"], default="hf")
    p.add_argument("-o", "--output", required=True, help="the folder to write (new or empty; never a run dir)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="the weights' dtype (checkpoints hold float32)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_checkpoint(p)  # as sample and eval: best if the run has one
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from gptkit.hf_export import export_run

    cls, path = export_run(args.run_dir, args.output, args.checkpoint or "auto", args.dtype, args.overwrite)
    print(f"wrote {args.output} ({cls}: config.json, model.safetensors, tokenizer.json) from {path}")
    return 0
