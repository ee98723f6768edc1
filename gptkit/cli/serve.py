"""`gptkit serve`: the OpenAI-compatible API and the page (gptkit.serve) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

from gptkit.cli.common import add_device, add_quantize, need_torch, non_empty, whole_number


def add_serve_command(sub) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible API and a web page for your models and runs",
                       description="Serve models (run dirs, HF GPT-2 folders, GPT-2 names) and the runs under --runs: "
                                   "POST /v1/completions as OpenAI's API, and a page at / (tokenizer, generation, "
                                   "live loss curves). Needs pip install \"gptkit[serve]\".")
    p.add_argument("models", nargs="*", metavar="MODEL", help="run dirs, HF GPT-2 folders or GPT-2 names to serve")
    p.add_argument("--runs", default="runs", help="serve every run dir under this folder too (default: runs)")
    p.add_argument("--host", type=non_empty("a host name or address, e.g. 127.0.0.1 or 0.0.0.0 (every interface)"),
                   default="127.0.0.1", help="default 127.0.0.1 (this machine only); 0.0.0.0 for every interface")
    p.add_argument("--port", type=whole_number(1, 65535), default=8000, help="1 to 65535 (default: 8000)")
    p.add_argument("--batch-size", "--batch_size", type=whole_number(1), default=8,
                   help="rows each model's engine runs at once (requests beyond wait for a row)")
    p.add_argument("--queue", type=whole_number(1), default=256, help="choices waiting per model before 503")
    p.add_argument("--max-tokens", "--max_tokens", type=whole_number(0), default=1024,
                   help="the largest max_tokens a request may ask for")
    p.add_argument("--max-n", "--max_n", type=whole_number(1), default=16, help="the largest n a request may ask for")
    p.add_argument("--max-models", "--max_models", type=whole_number(1), default=4,
                   help="models loaded at once; past it the least recently used idle one is unloaded (default: 4)")
    p.add_argument("--compile", choices=["auto", "yes", "no"], default="auto", help="the engines' decode step")
    add_device(p)
    add_quantize(p)
    p.set_defaults(func=cmd_serve)


def make_worker_factory(device: str, batch_size: int, queue: int, compile="auto", quantize: str | None = None):
    """spec -> a Worker running that model's engine (loads the weights; called on a model's first request)."""

    def make(spec: str):
        from gptkit.serve.worker import Worker
        from gptkit.torch.generate import Engine
        from gptkit.torch.quantize import prepare_for_decoding
        from gptkit.torch.weights import load_model

        model, src = load_model(spec, "auto", device)
        prepare_for_decoding(model, batch_size, compile, quantize)  # int8, or oneDNN's kernel eager on a CPU
        return Worker(Engine(model, batch_size, compile=compile), src.load_tokenizer(), src.config, queue,
                      src.chat_format())

    return make


def check_specs(specs: list[str]) -> None:
    """Refuse at start a model named on the command line that is neither a path nor a GPT-2 name (a typo would
    otherwise be listed and then fail every request)."""
    from gptkit.hf.hub import HUB_MODELS

    for spec in specs:
        if not Path(spec).exists() and spec not in HUB_MODELS:
            raise FileNotFoundError(f"{spec}: no such run dir or folder, and not a GPT-2 name "
                                    f"({', '.join(HUB_MODELS)})")


def cmd_serve(args) -> int:
    from gptkit.serve import require_serve

    require_serve()
    need_torch("serve")
    import uvicorn

    from gptkit.serve.app import Limits, create_app
    from gptkit.serve.registry import Registry
    from gptkit.torch.quantize import check_compile
    from gptkit.torch.runtime import pick_device

    if args.max_n < 1 or args.batch_size < 1:
        raise ValueError("--max-n and --batch-size must be >= 1")
    compile = {"auto": "auto", "yes": True, "no": False}[args.compile]
    device = pick_device(args.device)
    check_compile(args.quantize, compile, device)  # refused at start, not at each model's load
    factory = make_worker_factory(device, args.batch_size, args.queue, compile, args.quantize)
    check_specs(args.models)
    registry = Registry(args.models, Path(args.runs), factory, max_models=args.max_models)
    limits = Limits(max_tokens=args.max_tokens, max_n=args.max_n)
    ids = list(registry.ids())
    print(f"gptkit serve: http://{args.host}:{args.port}/  ({len(ids)} models: {', '.join(ids) or 'none yet'}; "
          f"OpenAI clients: base_url=http://{args.host}:{args.port}/v1)", file=sys.stderr)
    uvicorn.run(create_app(registry, limits), host=args.host, port=args.port, log_level="warning")
    return 0
