"""`gptkit sample`: text from a run, a HF GPT-2 folder or a GPT-2 name, through the generation engine.

--num-samples N runs as one batch of up to --batch-size rows (sample k has seed --seed + k, so its text does not
depend on the batch size); --stream prints each sample as it is generated, one at a time. --draft RUN decodes
speculatively (gptkit.torch.speculative: the same distribution, the target's greedy ids), one sample at a time.
"""

from __future__ import annotations

import sys

from gptkit.cli.common import add_checkpoint, add_device, add_quantize, need_torch
from gptkit.config import MAX_TEMPERATURE, TEMPERATURE, TOP_P, SamplingError, check_sampling

MAX_BATCH = 64  # the default --batch-size at most: a bigger batch mostly costs KV-cache memory
FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "max_tokens": "--max-new-tokens",
         "n": "--num-samples"}  # check_sampling's names of the options -> this command's flags


def add_sample_command(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained run or GPT-2",
                       description="Generate text from a run, a HF GPT-2 / Llama / Qwen3 folder, or OpenAI's "
                                   "GPT-2 by name.")
    p.add_argument("run_dir", metavar="MODEL", help="a `gptkit train` run dir, a HF GPT-2/Llama/Qwen3 folder, or gpt2, "
                   "gpt2-medium, gpt2-large, gpt2-xl (HF cache, else downloaded)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    add_sampling(p, max_new_tokens=500, seed_help="sample k uses seed + k (default: 1337)")
    p.add_argument("--num-samples", "--num_samples", type=int, default=1, help="(default: 1)")
    p.add_argument("--batch-size", "--batch_size", type=int, default=None,
                   help=f"samples generated at once (default: --num-samples, at most {MAX_BATCH}; 1 with --stream)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end a sample before this text (repeatable); <|endoftext|> always ends one")
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                   help="compile the decode step (auto: on CUDA, where it runs under CUDA graphs; the first tokens "
                        "then wait for the compiler)")
    add_device(p)
    add_checkpoint(p)
    add_quantize(p)
    p.add_argument("--draft", metavar="MODEL", default=None,
                   help="a smaller model with the same tokenizer that drafts tokens for MODEL to check (speculative "
                        "decoding: MODEL's distribution, its greedy text); prints the draft's acceptance rate")
    p.add_argument("--draft-k", "--draft_k", type=int, default=4, help="tokens drafted per round with --draft")
    p.add_argument("--backend", choices=["torch", "mlx"], default="torch",
                   help="torch, or mlx (Apple's MLX; pip install 'gptkit[mlx]'); both read the same checkpoints")
    p.set_defaults(func=cmd_sample)


def add_sampling(p, max_new_tokens: int, seed_help: str) -> None:
    """The sampling flags of `gptkit sample` and `gptkit chat`, with serve's defaults."""
    p.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=max_new_tokens,
                   help=f"(default: {max_new_tokens})")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help=f"0 = greedy, at most {MAX_TEMPERATURE:g} (default: {TEMPERATURE}, as gptkit serve's)")
    p.add_argument("--top-k", "--top_k", type=int, default=None,
                   help="sample from the K most likely tokens only (default: all)")
    p.add_argument("--top-p", "--top_p", type=float, default=TOP_P,
                   help=f"sample from the fewest most likely tokens that reach probability P; 1 = all "
                        f"(default: {TOP_P}, as gptkit serve's)")
    p.add_argument("--seed", type=int, default=1337, help=seed_help)


def check_sampling_flags(args, n: int = 1) -> None:
    """The sampling flags checked (a ValueError naming the flag); top_p 1 becomes None, the engine's path without
    a cut."""
    try:
        check_sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, n)
    except SamplingError as e:
        raise ValueError(f"{FLAGS[e.option]} must be {e.rule}, got {e.value!r}") from None
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    args.top_p = args.top_p if args.top_p < 1 else None


def cmd_sample(args) -> int:
    check_sampling_flags(args, args.num_samples)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if any(not s for s in args.stop):
        raise ValueError("--stop needs a non-empty text")
    if args.draft and (args.backend != "torch" or args.stream):
        raise ValueError("--draft decodes with --backend torch and prints whole samples; drop --backend mlx / --stream")
    batch = args.batch_size or (1 if args.stream else min(args.num_samples, MAX_BATCH))
    compile = {"auto": "auto", "yes": True, "no": False}[args.compile]
    sync = 1 if args.stream else None
    if args.backend == "mlx":
        from gptkit.mlx import require_mlx

        require_mlx()
        from gptkit.mlx.generate import Engine
        from gptkit.mlx.weights import load_model

        model, src = load_model(args.run_dir, args.checkpoint or "auto")
        if args.quantize:
            from gptkit.mlx.weights import quantize

            quantize(model, args.quantize)
        engine = Engine(model, batch, compile=compile is not False, sync_every=sync)
    else:
        need_torch("sample")
        from gptkit.torch.cpu import for_cpu_decoding
        from gptkit.torch.generate import Engine
        from gptkit.torch.quantize import prepare_for_decoding
        from gptkit.torch.runtime import pick_device
        from gptkit.torch.weights import load_model

        model, src = load_model(args.run_dir, args.checkpoint or "auto", pick_device(args.device))
        # int8, or (eager on a CPU) oneDNN's kernel for the few rows of a decode step; a target checks k + 1 tokens
        prepare_for_decoding(model, args.draft_k + 1 if args.draft else batch, compile, args.quantize)
        if args.draft:
            draft, draft_src = load_model(args.draft, "auto", next(model.parameters()).device)
            if draft_src.tokenizer_fingerprint() != src.tokenizer_fingerprint():  # one vocabulary size is not enough
                raise ValueError(f"--draft {args.draft} has another tokenizer than {args.run_dir}: "
                                 f"{draft_src.tokenizer_name()}, not {src.tokenizer_name()}; a draft must turn text "
                                 f"into the ids its target does (train it on data prepared with the target's "
                                 f"tokenizer)")
            draft, tok = for_cpu_decoding(draft), src.load_tokenizer()
            _print_drafted(args, model, draft, tok, _prompt_ids(tok, args.prompt, src.config.block_size))
            return 0
        engine = Engine(model, batch, compile=compile, sync_every=sync)
    tok = src.load_tokenizer()
    _print_samples(args, engine, tok, _prompt_ids(tok, args.prompt, src.config.block_size))
    return 0


def _prompt_ids(tok, prompt: str, block_size: int) -> list[int]:
    ids = tok.encode(prompt, allowed_special="all")
    if not ids:
        raise ValueError("the prompt is empty; give --prompt TEXT (e.g. --prompt $'\\n')")
    if len(ids) > block_size:
        print(f"gptkit: notice: the prompt has {len(ids)} tokens; the model sees the last {block_size} (block_size)",
              file=sys.stderr)
    return ids


def _print_samples(args, engine, tok, prompt: list[int]) -> None:
    """Each sample as the prompt and its text, separated by a line of dashes; streamed, or printed in order."""
    from gptkit.generate.engine import Request
    from gptkit.generate.text import generate_text

    stop = () if tok.eot_token is None else (tok.eot_token,)
    requests = [Request(tuple(prompt), args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                        args.seed + k, stop) for k in range(args.num_samples)]
    texts: list[list[str]] = [[] for _ in requests]
    done, shown = [False] * len(requests), [-1] * len(requests)  # shown: pieces printed, -1 = not even the prompt
    printed = 0  # samples printed whole

    def catch_up() -> None:  # print what is ready, in sample order
        nonlocal printed
        while printed < len(requests):
            k = printed
            if shown[k] < 0:
                sys.stdout.write(("\n" + "-" * 40 + "\n" if k else "") + args.prompt)
                shown[k] = 0
            sys.stdout.write("".join(texts[k][shown[k]:]))
            shown[k] = len(texts[k])
            if not done[k]:
                break
            sys.stdout.write("\n")
            printed += 1
        sys.stdout.flush()

    for k, text, finish in generate_text(engine, tok, requests, [args.stop] * len(requests)):
        texts[k].append(text)
        done[k] = finish is not None
        if args.stream:
            catch_up()
    catch_up()


def _print_drafted(args, target, draft, tok, prompt: list[int]) -> None:
    """Each sample through speculative decoding, printed whole as _print_samples prints it; the acceptance rate."""
    from gptkit.generate.text import TextStream
    from gptkit.torch.speculative import SpeculativeStats, speculative_generate

    total, new_tokens = SpeculativeStats(), 0
    for k in range(args.num_samples):
        ids, stats = speculative_generate(target, draft, prompt, args.max_new_tokens, k=args.draft_k,
                                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                          seed=args.seed + k, stop_token=tok.eot_token)
        stream = TextStream(tok, args.stop)
        text = stream.feed(ids) + stream.finish()
        sys.stdout.write(("\n" + "-" * 40 + "\n" if k else "") + args.prompt + text + "\n")
        sys.stdout.flush()
        total, new_tokens = total + stats, new_tokens + len(ids)
    print(f"gptkit: draft tokens accepted: {total.acceptance_rate:.0%} of {total.proposed}; "
          f"{new_tokens / max(1, total.target_forwards):.2f} new tokens per target forward", file=sys.stderr)
