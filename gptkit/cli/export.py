"""`gptkit export RUN_DIR --format hf -o DIR`: a run's checkpoint as a Hugging Face folder that transformers loads
unchanged (AutoModelForCausalLM, AutoTokenizer, pipeline): the model (gptkit.hf.arch picks GPT-2, Llama or Qwen3 and
refuses what none represents) and its tokenizer (gptkit.tokenizer.hf_json) with, for a chat run, its chat template
and end-of-turn token as eos; everything checked before anything is written, the folder written whole or not at all.
`gptkit export MODEL --format gguf -o model.gguf`: the same as one GGUF file for llama.cpp, Ollama and LM Studio
(gptkit.hf.gguf), from a run, an HF folder or a GPT-2 name, with an Ollama Modelfile beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gptkit.cli.common import add_checkpoint
from gptkit.files import atomic_dir, atomic_write_text
from gptkit.generate.chat import end_of_generation
from gptkit.hf.arch import arch_for, write_hf
from gptkit.tokenizer.encodings import ENDOFTEXT
from gptkit.tokenizer.hf_json import char_json, tokenizer_config
from gptkit.tokenizer.load import tokenizer_from_record
from gptkit.tokenizer.simple import CharTokenizer, WordTokenizer
from gptkit.training.run_dir import is_run_dir, read_model_checkpoint, read_run_tokenizer_info
from gptkit.training.source import recorded_chat_format

# What an HF export writes: the only files --overwrite may replace (a folder with anything else is never deleted).
HF_EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
                   "tokenizer.json", "tokenizer_config.json")


def add_export_command(sub) -> None:
    p = sub.add_parser("export", help="write a run as a Hugging Face folder or a GGUF file (llama.cpp, Ollama)",
                       description="Write a run as a Hugging Face folder that transformers loads unchanged "
                       "(GPT2LMHeadModel, LlamaForCausalLM or Qwen3ForCausalLM by the run's options, with "
                       "tokenizer.json), or as a GGUF file that llama.cpp, Ollama and LM Studio run (--format gguf; "
                       "a run, an HF folder or a GPT-2 name; an Ollama Modelfile beside it).")
    p.add_argument("run_dir", metavar="MODEL", help="a run dir (for gguf also an HF folder or a GPT-2 name)")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf")
    p.add_argument("-o", "--output", required=True,
                   help="hf: the folder to write (new or empty; never a run dir); gguf: the .gguf file to write")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16", "f32", "f16", "bf16", "q8_0"], default=None,
                   help="the weights' dtype (checkpoints hold float32): hf float32 (default), bfloat16, float16; "
                   "gguf f32 (default), f16, bf16, q8_0 (llama.cpp's 8-bit blocks)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export (a folder or file holding anything else is refused)")
    add_checkpoint(p)  # as sample and eval: best if the run has one
    p.set_defaults(func=cmd_export)


HF_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "f32": "float32",
             "bf16": "bfloat16", "f16": "float16"}
GGUF_DTYPES = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "float32": "f32", "float16": "f16",
               "bfloat16": "bf16"}


def cmd_export(args) -> int:
    if args.format == "gguf":
        path, modelfile = export_gguf(args.run_dir, args.output, args.checkpoint or "auto",
                                      GGUF_DTYPES[args.dtype or "f32"], args.overwrite)
        print(f"wrote {path} and {modelfile} (`ollama create NAME -f {modelfile}`; `llama-cli -m {path}`)")
        return 0
    if args.dtype not in (None, *HF_DTYPES):
        raise ValueError(f"--dtype {args.dtype} is a GGUF type; an HF folder takes float32, bfloat16 or float16")
    cls, path = export_run(args.run_dir, args.output, args.checkpoint or "auto", HF_DTYPES[args.dtype or "float32"],
                           args.overwrite)
    print(f"wrote {args.output} ({cls}: config.json, model.safetensors, tokenizer.json) from {path}")
    return 0


GGUF_MAGIC = b"GGUF"
MODELFILE_HEAD = "# Ollama's Modelfile, written by gptkit export"


def export_gguf(spec: str, out: str | os.PathLike, which: str = "auto", dtype: str = "f32",
                overwrite: bool = False) -> tuple[Path, Path]:
    """Write a run, HF folder or GPT-2 name as a GGUF file at `out` (gptkit.hf.gguf) and an Ollama Modelfile beside
    it; returns both paths. An existing file is replaced only with overwrite, and only if it is an earlier export (a
    GGUF file; a Modelfile gptkit wrote)."""
    from gptkit.hf.gguf import check_exportable, write_gguf
    from gptkit.training.source import read_model_source, source_config

    out = Path(out)
    modelfile = out.with_name("Modelfile")
    for path, ours in ((out, _starts(out, GGUF_MAGIC)), (modelfile, _starts(modelfile, MODELFILE_HEAD.encode()))):
        if path.is_dir() or (path.exists() and not (overwrite and ours)):
            what = "an earlier export: pass --overwrite" if ours else "not a gptkit export: pick another -o"
            raise ValueError(f"{path} exists ({what})")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent} is not a folder; create it first")
    check_exportable(source_config(spec))  # a shape llama.cpp cannot run is refused before any weight is read
    src = read_model_source(spec, which=which)  # (which: a run's checkpoint; an HF folder has one)
    tok, fmt = src.load_tokenizer(), src.chat_format()
    write_gguf(out, src.config, src.tensors, tok, fmt, dtype, name=Path(str(spec)).name)  # checks the rest first
    atomic_write_text(modelfile, ollama_modelfile(out.name, tok, fmt))
    return out, modelfile


def _starts(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def ollama_modelfile(gguf_name: str, tok, fmt) -> str:
    """An Ollama Modelfile for the GGUF file: ChatML as Ollama's template with <|im_end|> as its stop, a model's own
    Jinja template left to Ollama (it reads tokenizer.chat_template), a base model as plain completion."""
    lines = [f"{MODELFILE_HEAD}: `ollama create NAME -f Modelfile`, then `ollama run NAME`", f"FROM ./{gguf_name}"]
    if fmt is not None and fmt.template is None:
        lines += ['TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}', "{{ .Content }}<|im_end|>",
                  '{{ end }}<|im_start|>assistant', '"""', 'PARAMETER stop "<|im_end|>"']
    elif fmt is not None:
        lines += [f"PARAMETER stop {json.dumps(fmt.end_of_turn)}"]
    else:
        lines += ['TEMPLATE "{{ .Prompt }}"']
        if tok.eot_token is not None:
            lines += ['PARAMETER stop "<|endoftext|>"']
    return "\n".join(lines) + "\n"


def tokenizer_files(tok, max_length: int, fmt=None) -> dict[str, str]:
    """{file name: text} of a tokenizer for AutoTokenizer: tokenizer.json (byte-level BPE, or a char vocabulary as
    WordLevel), tokenizer_config.json, special_tokens_map.json. A word tokenizer is refused: its decode drops the
    space before punctuation, which no HF decoder does. With a chat format `fmt` (gptkit.tokenizer.chat.ChatFormat),
    tokenizer_config.json carries it as `chat_template` (ChatML as CHATML_TEMPLATE) with its special tokens, and its
    end of turn is the eos token: what apply_chat_template and pipeline("text-generation") read."""
    from gptkit.tokenizer.chat import CHATML_TEMPLATE

    if isinstance(tok, WordTokenizer):
        raise ValueError("a word tokenizer has no exact HF equivalent (its decode drops the space before punctuation, "
                         "which no HF decoder does); export a run trained with a BPE or char tokenizer")
    doc = char_json(list(tok.chars), tok.special_tokens) if isinstance(tok, CharTokenizer) else tok.to_tokenizer_json()
    eot = ENDOFTEXT if tok.eot_token is not None else None
    config = tokenizer_config(tok.special_tokens, eot, max_length)
    special_map = {"bos_token": eot, "eos_token": eot} if eot else {}
    if fmt is not None:
        chat = {**dict(fmt.variables), "eos_token": fmt.end_of_turn}
        config.update(chat, chat_template=fmt.template or CHATML_TEMPLATE)
        special_map.update(chat)
    return {"tokenizer.json": json.dumps(doc, ensure_ascii=False) + "\n",
            "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False) + "\n",
            "special_tokens_map.json": json.dumps(special_map, indent=2) + "\n"}


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, which: str = "auto", dtype: str = "float32",
               overwrite: bool = False) -> tuple[str, Path]:
    """Write the run's checkpoint (which: last, best, auto) and tokenizer as a HF folder at `out`; returns (the HF
    class, the checkpoint file it came from)."""
    config, tensors, path = read_model_checkpoint(run_dir, which)
    out = Path(out)
    if is_run_dir(out) or out.resolve() == Path(run_dir).resolve():
        raise ValueError(f"{out} is a gptkit run dir; export into a new folder, e.g. -o {out.name}-hf")
    arch_for(config)  # refuses a model HF cannot represent, before anything is written
    info = read_run_tokenizer_info(run_dir)
    tok = tokenizer_from_record(info, run_dir)
    fmt = recorded_chat_format(info, Path(run_dir), lambda: tok)  # a chat run's format goes with it
    files = tokenizer_files(tok, config.block_size, fmt)  # refuses a tokenizer HF cannot represent exactly
    eos = end_of_generation(tok, fmt)  # a chat model's generation ends with its turn
    # complete or absent, never half-written; --overwrite replaces an earlier HF export and nothing else
    with atomic_dir(out, overwrite=overwrite, replaceable=HF_EXPORT_FILES) as tmp:
        cls = write_hf(config, tensors, tmp, dtype, eos_token_id=eos)
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return cls, path
