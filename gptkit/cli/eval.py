"""`gptkit eval`: loss, perplexity and bits per byte of a data split, HellaSwag accuracy, and a chat model's exact
match on conversations with one right answer.
"""

from __future__ import annotations

import os

from gptkit.cli.common import add_checkpoint, add_device, add_quiet, need_torch, whole_number

# -- gptkit eval ------------------------------------------------------------------------------------


def add_eval_command(sub) -> None:
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
    p.add_argument("--chat", metavar="TASK|FILE",
                   help="a built-in chat task (reverse), or a JSONL/parquet file of conversations that end with the "
                   "right answer: exact-match accuracy of the model's greedy replies")
    p.add_argument("--limit", type=whole_number(0), default=0,
                   help="score only the first N HellaSwag examples or chat conversations (0: all)")
    add_device(p)
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (autocast)")
    add_checkpoint(p, help="for a run dir; default: best if the run has one")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_quiet(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    need_torch("eval")
    import json

    from gptkit.torch.runtime import pick_device, pick_dtype
    from gptkit.torch.weights import load_model

    if not args.data and not args.hellaswag and not args.chat:
        raise ValueError("nothing to evaluate: give --data DATA_DIR, --hellaswag FILE.jsonl (or val), or --chat TASK")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    model, src = load_model(args.model, args.checkpoint or "auto", device)
    tok = src.load_tokenizer()
    report = {"model": str(src.path)}
    if args.data:
        from gptkit.data.prepare import check_tokenizer, resolve_data_dir
        from gptkit.torch.evaluate import split_loss

        data_dir = resolve_data_dir(args.data)
        check_tokenizer(data_dir, tok, name=f"the model's tokenizer ({src.tokenizer['spec']!r})")
        report[args.split] = split_loss(model, data_dir, args.split, args.batch_size, args.max_tokens, device, dtype,
                                        progress=not args.quiet)
    if args.hellaswag:
        from gptkit.data.hellaswag import find_file, load_examples
        from gptkit.torch.evaluate import hellaswag

        examples = load_examples(find_file(args.hellaswag), args.limit)
        got = hellaswag(model, tok, examples, device, dtype, progress=not args.quiet)
        report["hellaswag"] = {k: got[k] for k in ("acc", "acc_norm", "examples")}
    if args.chat:
        report["chat"] = _chat(model, tok, src.chat_format(), args)
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
    if args.chat:
        c = report["chat"]
        print(f"chat {args.chat}: exact match {c['accuracy']:.1%}, ended by itself {c['ended']:.1%} "
              f"({c['conversations']:,} held-out conversations)")
    return 0


def _chat(model, tok, fmt, args) -> dict:
    """A built-in task's held-out conversations, or a file's (JSONL or parquet: each conversation's last turn is the
    assistant's right answer)."""
    from gptkit.data.tasks import TASKS, held_out
    from gptkit.torch.evaluate import chat_accuracy

    if args.chat == "dialogue":
        raise ValueError("the dialogue task has no single right answer to score; evaluate --chat reverse")
    if args.chat in TASKS and not os.path.exists(args.chat):
        rows = held_out(args.chat)
    elif os.path.isfile(args.chat):
        from gptkit.data.chat import read_conversations

        rows = read_conversations(args.chat)
        last = next((k for k, r in enumerate(rows, 1) if r["messages"][-1]["role"] != "assistant"), None)
        if last:
            raise ValueError(f"{args.chat}: conversation {last} does not end with the assistant's answer to score")
    else:
        raise ValueError(f"--chat {args.chat}: not a built-in task ({', '.join(TASKS)}) nor a JSONL or parquet file")
    return chat_accuracy(model, tok, rows[: args.limit or None], fmt, batch_size=args.batch_size)
