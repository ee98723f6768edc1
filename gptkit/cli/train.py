"""`gptkit train`: a preset plus config-field options, run by the chosen backend.

Every GPTConfig and TrainConfig field is a real option of the `train` parser, in four spellings that all mean the
same: `--max_iters`, `--max-iters`, `--train.max_iters`, `--train.max-iters`, each taking `VALUE` or `=VALUE`.
The options record what was given as `--table.field=value` strings in `args.overrides`, in command-line order;
typing and checking stay in `gptkit.config` (`parse_overrides`), which `load_stages` and `resume_config`
apply. There is no second parser: an unknown `--flag` is argparse's usage error, with the closest field named.
Not done: a bare boolean flag (`--compile` alone); say `--compile=true`. A value that starts with "-" and is not a
number needs the `=` form (`--sample_prompt=--`), as with any argparse option.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re

from gptkit.cli.common import need_torch
from gptkit.config import (CONFIGS_DIR, MODEL_FIELDS, TRAIN_FIELDS, GPTConfig, TrainConfig, load_stages,
                           unknown_field)

_TABLES = (("model", GPTConfig, MODEL_FIELDS), ("train", TrainConfig, TRAIN_FIELDS))
_METAVARS = {int: "INT", float: "FLOAT", bool: "BOOL", str: "STR"}


def add_train_command(sub) -> None:
    """`gptkit train [PRESET] [--resume [RUN_DIR]] [--overwrite] [--list] [--FIELD VALUE ...]` on `sub`."""
    p = sub.add_parser(
        "train", help="train a model (default: char-level tiny Shakespeare on the CPU)", allow_abbrev=False,
        usage="%(prog)s [PRESET] [--resume [RUN_DIR]] [--overwrite] [--list] [--FIELD VALUE ...]",
        description="Train a GPT. Any field of the preset can be overridden with --FIELD VALUE or --FIELD=VALUE "
        "(e.g. --max_iters 500 --n-layer=6 --device cuda); see `gptkit train --list`.", unknown_hint=config_hint)
    p.add_argument("preset", nargs="?", default="shakespeare_char", help="a preset name or a .toml file")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (default: the preset's out_dir)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run in the same run dir")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--dry-run", action="store_true", help="print the memory each process would hold, and exit")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="--dry-run: processes over all nodes (default: torchrun's WORLD_SIZE, else 1)")
    add_config_fields(p)
    p.set_defaults(func=cmd_train)


class _Override(argparse.Action):
    """`--FIELD VALUE` -> "--table.FIELD=VALUE" appended to args.overrides (config.parse_overrides checks it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*namespace.overrides, f"--{self.dest}={values}"]


def add_config_fields(p: argparse.ArgumentParser) -> None:
    """One option per config field, grouped by table; help shows the field's name and its comment in config.py.
    The other spellings (dashes, `--model.` / `--train.`) are the same option, left out of the help."""
    p.set_defaults(overrides=[])
    for table, cls, types in _TABLES:
        e = next(n for n in types if "_" in n)  # an example field: vocab_size, out_dir
        d = e.replace("_", "-")
        note = f"each also qualified and with dashes: --{e} = --{d} = --{table}.{e} = --{table}.{d}"
        group = p.add_argument_group(f"{table} fields ({cls.__name__})", note)
        helps = _field_help(cls)
        for name, typ in types.items():
            kw = dict(action=_Override, dest=f"{table}.{name}", default=argparse.SUPPRESS)
            group.add_argument(f"--{name}", metavar=_METAVARS[typ], help=helps.get(name, "").replace("%", "%%"), **kw)
            aliases = {f"--{name.replace('_', '-')}", f"--{table}.{name}", f"--{table}.{name.replace('_', '-')}"}
            group.add_argument(*sorted(aliases - {f"--{name}"}), help=argparse.SUPPRESS, **kw)
            if table == "train":  # a two-stage preset's second run (config.load_stages)
                group.add_argument(*sorted({f"--finetune.{name}", f"--finetune.{name.replace('_', '-')}"}),
                                   help=argparse.SUPPRESS, **{**kw, "dest": f"finetune.{name}"})


def _field_help(cls) -> dict[str, str]:
    """Each field's comment in the class source: the one after it (with its indented continuation lines), else
    the lines just above it. Example: GPTConfig -> {"n_layer": "transformer blocks", ...}"""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):  # no source (a frozen install): help without comments
        return {}
    helps, above, last = {}, [], None
    for line in lines:
        if re.match(r"\s+(def|@)", line):
            break
        code, _, comment = line.partition("#")
        if field := re.fullmatch(r"\s+(\w+): \w+ = .*", code.rstrip()):
            last = field[1]
            helps[last], above = comment.strip() or " ".join(above), []
        elif not code.strip() and comment:
            if comment.startswith("  ") and last in helps:  # "#      more of the line above"
                helps[last] += " " + comment.strip()
            else:
                above.append(comment.strip())
    return helps


def config_hint(extra: list[str]) -> str:
    """For an unknown `--flag` of train, the closest config field.

    Example: ["--n_layr=2"] -> " (unknown config field 'n_layr'; did you mean 'n_layer'?)"
    """
    flags = [x[2:].partition("=")[0] for x in extra if x.startswith("--")]
    return f" ({unknown_field(flags[0])})" if flags else ""


# The val loss the presets table (docs/gpus.md) gives for an unchanged preset run to its end (measured over several
# runs).
EXPECTED_VAL = {"shakespeare_char": "1.80 (1.78-1.83)", "shakespeare_char_gpt2": "1.85",
                "shakespeare_char_long": "1.46 (1.45-1.47)", "nanogpt_cpu": "1.91-1.93"}


def cmd_train(args) -> int:
    from gptkit.training.setup import resume_config

    if args.list:
        return _list_presets()
    if any(o.startswith("--model.vocab_size=") for o in args.overrides):
        raise ValueError("vocab_size comes from the data's tokenizer (a run's vocabulary is its data's); drop "
                         "--vocab_size, or prepare the data with another tokenizer")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite erases one; pass one of them")
    stages = [] if isinstance(args.resume, str) else load_stages(args.preset, args.overrides)
    if args.resume and len(stages) < 2:
        # bare --resume: the run dir the preset (and --out_dir) would use
        cfg = resume_config(args.resume if isinstance(args.resume, str) else stages[0].run_dir, args.overrides)
    else:
        cfg = stages[-1]
    if args.dry_run:
        return _dry_run(cfg, int(os.environ.get("WORLD_SIZE", "1")) if args.nproc is None else args.nproc)
    if cfg.train.backend == "mlx":
        from gptkit.mlx import require_mlx

        require_mlx()
    else:
        need_torch("train")
    from gptkit.training.run import train, train_stages  # the run's backend is picked there, as for a Python caller

    if len(stages) > 1:
        result = train_stages(stages, resume=bool(args.resume), overwrite=args.overwrite, overrides=args.overrides)
    else:
        result = train(cfg, resume=bool(args.resume), overwrite=args.overwrite)
    rc = 128 + result.signal if result.signal else 0  # 130 after Ctrl-C, 143 after SIGTERM: `&&` stops there
    if os.environ.get("RANK", "0") != "0":
        return rc  # under torchrun only rank 0 reports
    if args.resume and not result.losses and result.stopped == "done":
        print(f"{result.run_dir} is already at step {result.step} of max_iters {cfg.train.max_iters}: nothing to do; "
              f"go further with `gptkit train --resume {result.run_dir} --max_iters=N`")
        return rc
    print(f"run dir: {result.run_dir}  (sample with `gptkit sample {result.run_dir}`)")
    how = {"interrupted": "interrupted; continue with", "time": "stopped at max_seconds; continue with"}
    if result.stopped in how:
        print(f"{how[result.stopped]} `gptkit train --resume {result.run_dir}`")
    if result.evals:  # the last line: the losses, and what docs/gpus.md expects of an unchanged preset run to its end
        last = result.evals[-1]
        expected = EXPECTED_VAL.get(args.preset) if not args.overrides and result.stopped != "interrupted" else None
        print(f"step {last['step']}: train loss {last['train_loss']:.4f}, val loss {last['val_loss']:.4f}, "
              f"best val {result.best_val:.4f}, {last['elapsed_s']:.1f} s"
              + (f" (expected for {args.preset}: about {expected})" if expected else ""))
    return rc


def _dry_run(cfg, world: int) -> int:
    """`--dry-run`: the per-process memory of the run (gptkit.torch.memory), from its config only: no data read, no
    weights built. The vocabulary is the data's when it is prepared, else the config's."""
    if world < 1:
        raise ValueError(f"--nproc must be >= 1, got {world}")
    if cfg.train.backend != "torch":
        raise ValueError("--dry-run counts the torch backend's memory; drop --backend=mlx")
    need_torch("train --dry-run")
    from dataclasses import replace
    from pathlib import Path

    from gptkit.data.prepare import load_meta
    from gptkit.torch.memory import dry_run_report

    if (Path(cfg.train.data) / "meta.json").is_file():
        cfg = replace(cfg, model=replace(cfg.model, vocab_size=load_meta(cfg.train.data)["tokenizer"]["vocab_size"]))
    if cfg.train.init_from:
        print(f"(the model's shape as configured; --init_from={cfg.train.init_from} may change it)")
    print(dry_run_report(cfg, world))
    return 0


def _list_presets() -> int:
    for path in sorted(CONFIGS_DIR.glob("*.toml")):
        first = next((ln[1:].strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), "")
        print(f"{path.stem:24s} {first}")
    return 0
