"""The `gptkit` command: one dispatcher with subcommands.

Each subcommand parses its arguments and calls one library function; heavy modules are imported only
inside the subcommand that needs them. A user mistake (ValueError, a missing file) prints one line,
`gptkit: error: ...`, and exits 1; a traceback means a bug in gptkit.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

EXIT_USER_ERROR = 1


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
        from gptkit.simple_tokenizers import CharTokenizer

        return CharTokenizer.train(text)
    from gptkit.tokenizer import get_tokenizer

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
            raise ValueError(f"{first} Pass --allowed-special all (or a comma-separated list) to encode it as one.") from None
        raise


# -- gptkit tokenizer ... ---------------------------------------------------------------------------


def cmd_tokenizer_train(args) -> int:
    from gptkit.datasets import resolve_source
    from gptkit.files import iter_text_blocks
    from gptkit.simple_tokenizers import CharTokenizer, WordTokenizer
    from gptkit.tokenizer import Tokenizer

    paths = [resolve_source(f) for f in args.files]

    def texts():
        for p in paths:
            yield from iter_text_blocks(p, errors=args.errors)

    pattern = None if args.pattern == "none" else args.pattern
    if args.type == "bpe":
        tok = Tokenizer.train(
            texts(), args.vocab_size, pattern, args.special, num_workers=args.workers, progress=not args.quiet
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
    from gptkit.tokenizer import render_token

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


def cmd_train(args) -> int:
    from gptkit.config import load_run_config
    from gptkit.run_setup import resume_config

    if args.resume:
        run_dir = args.resume
        if not isinstance(run_dir, str):  # bare --resume: the run dir the preset (and --out_dir) would use
            preset = load_run_config(args.preset, args.overrides)
            run_dir = preset.run_dir
        cfg = resume_config(run_dir, args.overrides)
    else:
        cfg = load_run_config(args.preset, args.overrides)
    if cfg.train.backend == "mlx":
        from gptkit.mlx import require_mlx

        require_mlx()
        from gptkit.mlx.train import train
    else:
        _need_torch("train")
        from gptkit.train import train
    result = train(cfg, resume=bool(args.resume), overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    if result.evals:
        last = result.evals[-1]
        print(f"step {last['step']}: train loss {last['train_loss']:.4f}, val loss {last['val_loss']:.4f}, "
              f"best val {result.best_val:.4f}, {last['elapsed_s']:.1f} s")
    how = {"interrupted": "interrupted; continue with", "time": "stopped at max_seconds; continue with"}
    if result.stopped in how:
        print(f"{how[result.stopped]} `gptkit train --resume {result.run_dir}`")
    print(f"run dir: {result.run_dir}  (sample with `gptkit sample {result.run_dir}`)")
    return 0


def cmd_sample(args) -> int:
    from gptkit.config import check_sampling

    check_sampling(args.temperature, args.top_k, args.top_p)
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError("--max-new-tokens must be >= 0 and --num-samples >= 1")
    if args.backend == "mlx":
        return _sample_mlx(args)
    _need_torch("sample")
    import torch

    from gptkit.runtime import pick_device
    from gptkit.sample import stream_text
    from gptkit.weights import load_model

    device = pick_device(args.device)
    model, src = load_model(args.run_dir, args.checkpoint or "auto", device)
    tok = src.load_tokenizer()
    prompt = _prompt_ids(tok, args.prompt, src.config.block_size)
    gen = torch.Generator(device).manual_seed(args.seed)
    _print_samples(args, lambda: stream_text(model, tok, prompt, args.max_new_tokens, device=device,
                                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                             generator=gen))
    return 0


def _sample_mlx(args) -> int:
    from gptkit.mlx import require_mlx

    require_mlx()
    from gptkit.mlx.weights import load_model
    from gptkit.mlx.sample import stream_text

    model, src = load_model(args.run_dir, args.checkpoint or "auto")
    tok = src.load_tokenizer()
    prompt = _prompt_ids(tok, args.prompt, src.config.block_size)
    seeds = iter(range(args.seed, args.seed + args.num_samples))  # one seed per sample: MLX keys are explicit
    _print_samples(args, lambda: stream_text(model, tok, prompt, args.max_new_tokens, temperature=args.temperature,
                                             top_k=args.top_k, top_p=args.top_p, seed=next(seeds)))
    return 0


def _prompt_ids(tok, prompt: str, block_size: int) -> list[int]:
    ids = tok.encode(prompt, allowed_special="all")
    if not ids:
        raise ValueError("the prompt is empty; give --prompt TEXT (e.g. --prompt $'\\n')")
    if len(ids) > block_size:
        print(f"gptkit: notice: the prompt has {len(ids)} tokens; the model sees the last {block_size} (block_size)",
              file=sys.stderr)
    return ids


def _print_samples(args, stream) -> None:
    """Print --num-samples samples, each the prompt and the pieces of a fresh `stream()`."""
    for k in range(args.num_samples):
        if k:
            print("\n" + "-" * 40)
        sys.stdout.write(args.prompt)
        for piece in stream():
            sys.stdout.write(piece)
            if args.stream:
                sys.stdout.flush()
        sys.stdout.write("\n")


def cmd_eval(args) -> int:
    _need_torch("eval")
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


def cmd_export(args) -> int:
    from gptkit.checkpoint import read_model_checkpoint
    from gptkit.hf import write_hf_gpt2

    config, tensors, path = read_model_checkpoint(args.run_dir, args.checkpoint)
    write_hf_gpt2(config, tensors, args.output)
    print(f"wrote {args.output} (HF GPT-2: config.json, model.safetensors) from {path}")
    return 0


def _list_presets() -> int:
    from gptkit.config import CONFIGS_DIR

    for path in sorted(CONFIGS_DIR.glob("*.toml")):
        first = next((ln[1:].strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), "")
        print(f"{path.stem:24s} {first}")
    return 0


def _need_torch(command: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"`gptkit {command}` needs PyTorch; install it with `pip install torch` "
                         "(CPU only: `pip install torch --index-url https://download.pytorch.org/whl/cpu`)")


# -- the parser ---------------------------------------------------------------------------------


def _input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="input file; '-' or nothing reads standard input")
    p.add_argument("--text", help="use this text instead of a file")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict", help="what to do with invalid UTF-8")


def _tokenizer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tokenizer", "-t", default="gpt2", help="gpt2, cl100k_base, char (built from the input) or a saved file"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptkit", description="A GPT toolkit built from scratch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("prepare", help="tokenize text into train/val token files",
                       description="Tokenize text into train/val token files (nanoGPT's .bin format) and meta.json.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="text, .jsonl or .parquet files (a web corpus such as FineWeb-Edu), folders of them, globs, "
                   "or a named dataset (shakespeare)")
    p.add_argument("--tokenizer", "-t", default="gpt2", help="char, gpt2, cl100k_base, or a saved tokenizer file")
    p.add_argument("-o", "--output", required=True, help="the data dir to write")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the characters kept for val")
    p.add_argument("--field", default="text", help="the JSONL field or parquet column holding the text")
    p.add_argument("--shard-tokens", type=_count, default=0,
                   help="tokens per shard file, e.g. 100M (build-nanogpt's shards); 0: one file per split")
    p.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")
    p.add_argument("--workers", type=int, default=None, help="tokenizing processes (default: all cores)")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict", help="what to do with invalid UTF-8")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    tp = sub.add_parser("tokenizer", help="train, run and inspect tokenizers", description="Tokenizers.")
    tsub = tp.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    p = tsub.add_parser("train", help="train a tokenizer on text files", description="Train a tokenizer.")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files, or a named dataset (shakespeare)")
    p.add_argument("-o", "--output", required=True, help="where to save it (a .vocab view is written beside)")
    p.add_argument("--type", choices=["bpe", "char", "word"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=4096, help="total tokens incl. 256 bytes and specials")
    p.add_argument("--pattern", default="gpt4", help="split pattern: gpt2, gpt4, none, or a regex")
    p.add_argument("--special", action="append", default=[], help="a special token (repeatable)")
    p.add_argument("--workers", type=int, default=1, help="processes counting chunks")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict", help="what to do with invalid UTF-8")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tokenizer_train)

    for name, func, help_ in [
        ("encode", cmd_tokenizer_encode, "print the token ids of a text"),
        ("show", cmd_tokenizer_show, "show a text with its token boundaries"),
        ("stats", cmd_tokenizer_stats, "count tokens and bytes per token of a text"),
    ]:
        p = tsub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        _input_args(p)
        _tokenizer_arg(p)
        p.add_argument(
            "--allowed-special", metavar="all|TOK,TOK", help="special tokens to encode as such (default: none)"
        )
        if name == "show":
            p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
            p.add_argument("--ids", action="store_true", help="also print the ids")
        p.set_defaults(func=func)

    p = sub.add_parser("train", help="train a model (default: char-level tiny Shakespeare on the CPU)", allow_abbrev=False,
                       description="Train a GPT. Fields of the preset can be overridden with --key=value "
                       "(e.g. --max_iters=500 --n_layer=6 --device=cuda); see `gptkit train --list`.")
    p.add_argument("preset", nargs="?", default="shakespeare_char", help="a preset name or a .toml file")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (default: the preset's out_dir)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run in the same run dir")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.set_defaults(func=cmd_train, overrides=[])

    p = sub.add_parser("sample", help="generate text from a trained run or GPT-2",
                       description="Generate text from a run, a HF GPT-2 folder, or OpenAI's GPT-2 by name.")
    p.add_argument("run_dir", metavar="MODEL", help="a `gptkit train` run dir, a HF GPT-2 folder, or gpt2, "
                   "gpt2-medium, gpt2-large, gpt2-xl (HF cache, else downloaded)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--checkpoint", choices=["best", "last"], help="default: best if the run has one")
    p.add_argument("--backend", choices=["torch", "mlx"], default="torch",
                   help="torch, or mlx (Apple's MLX; pip install 'gptkit[mlx]'); both read the same checkpoints")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="loss/perplexity/bits per byte on a data split; HellaSwag accuracy",
                       description="Evaluate a run, a HF GPT-2 folder or a GPT-2 name: loss, perplexity and bits per "
                       "byte over a whole data split (--data), and HellaSwag acc / acc_norm (--hellaswag).")
    p.add_argument("model", metavar="MODEL", help="a run dir, a HF GPT-2 folder, or gpt2 ... gpt2-xl")
    p.add_argument("--data", metavar="DATA_DIR", help="a data dir from `gptkit prepare` (or a named one)")
    p.add_argument("--split", default="val", help="the split of --data to read (default: val)")
    p.add_argument("--max-tokens", type=int, default=0, help="read only the first N tokens of the split (0: all)")
    p.add_argument("--batch-size", type=int, default=8, help="windows of block_size per forward pass")
    p.add_argument("--hellaswag", metavar="FILE.jsonl|val",
                   help="HellaSwag jsonl (published format), or val: the published val split (downloaded if absent)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N HellaSwag examples (0: all)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (autocast)")
    p.add_argument("--checkpoint", choices=["best", "last"], help="for a run dir; default: best if the run has one")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write a run's weights for another library",
                       description="Write a run's weights as a Hugging Face GPT-2 folder (transformers loads it).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", choices=["hf"], default="hf")
    p.add_argument("-o", "--output", required=True, help="the folder to write")
    p.add_argument("--checkpoint", choices=["best", "last"], default="last")
    p.set_defaults(func=cmd_export)

    p = tsub.add_parser("decode", help="turn ids back into text", description="Decode whitespace-separated ids.")
    _input_args(p)
    _tokenizer_arg(p)
    p.set_defaults(func=cmd_tokenizer_decode)
    return parser


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


def _version() -> str:
    from gptkit import __version__

    return f"gptkit {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from gptkit.config import join_override_values

        argv = join_override_values(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and args.func is not cmd_train:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    if getattr(args, "list", False):
        return _list_presets()
    args.argv = argv
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
        print(f"gptkit: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("gptkit: interrupted", file=sys.stderr)
        return 130
