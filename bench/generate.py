"""Decode tokens/s of gptkit's generation engine against transformers' `generate` on the same weights, same run.

    python bench/generate.py                                   # CPU: GPT-2 124M (random weights), fp32
    python bench/generate.py --cases 1x32g 1x32s 8x32g         # batch x prompt length, g(reedy) / s(ampled)
    python bench/generate.py --device cuda --dtype bfloat16    # GPU: compiled decode step under CUDA graphs
    python bench/generate.py --mlx                             # also gptkit's MLX engine
    python bench/generate.py --quantize int8 --no-hf --cases 1x32g 1x512g   # int8 weights against fp32, side by side

Weights: a GPT-2 124M built by transformers with random weights (seed 0) and loaded into gptkit through its HF
reader, so both sides run the very same tensors; --model DIR takes a HF GPT-2 folder instead (e.g. OpenAI's
weights from the HF cache). Every case generates --new-tokens tokens per row (no stop token on either side:
transformers gets min_new_tokens), timed from the prompt to the last token (prefill included), after one warm-up
run (which also compiles). Sampled cases use temperature 1, top-k 50 on both sides. Printed: tokens/s (rows x new
tokens / seconds), the ratio to transformers, and at batch 1 the fraction of the memory-bandwidth limit (the bytes of
the weights and the KV cache read per token, against this machine's measured read bandwidth). --quantize int8 adds
gptkit with int8 weights (gptkit.torch.quantize), timed after fp32 in the same case, and the ratio between them.
A case that runs oneDNN's packed linears (gptkit.torch.cpu.for_cpu_decoding: where they are faster on this CPU, or
with --linears packed) says so at the end of its line.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

DEFAULT_CASES = {"cpu": ["1x32g", "1x32s", "1x512g", "8x32g", "8x32s", "8x512g", "64x32g"],
                 "cuda": ["1x32g", "1x32s", "1x512g", "8x32g", "64x32g", "64x512g", "64x32s"]}


def parse_case(case: str) -> tuple[int, int, bool]:
    """"8x32s" -> (8, 32, True): batch 8, prompt 32 tokens, sampled."""
    rows, rest = case.split("x")
    return int(rows), int(rest[:-1]), rest[-1] == "s"


def read_bandwidth(device: torch.device) -> float:
    """Bytes/s of reading a 1 GiB tensor (a sum), the bound a memory-bound decode step works against."""
    x = torch.ones(256 * 2**20, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    fn()  # warm-up (and compile)
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def hf_model(args, folder: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    if args.model:
        return GPT2LMHeadModel.from_pretrained(args.model)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    model.save_pretrained(folder, safe_serialization=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--model", help="a HF GPT-2 folder (default: random GPT-2 124M weights)")
    ap.add_argument("--cases", nargs="+", help="BATCHxPROMPT followed by g or s (default: per device)")
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per row (default 64 on CPU, 256 on GPU)")
    ap.add_argument("--compile", choices=["auto", "yes", "no"], default="auto", help="gptkit's decode step")
    ap.add_argument("--mlx", action="store_true", help="also time gptkit's MLX engine (same weights)")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers")
    ap.add_argument("--quantize", choices=["int8"], help="also time gptkit with int8 weights (gptkit.torch.quantize)")
    ap.add_argument("--linears", choices=["auto", "packed", "plain"], default="auto",
                    help="gptkit's linears on a CPU in fp32: as gptkit sample picks them (auto: the faster here, timed "
                         "by gptkit.torch.cpu.packed_is_faster), oneDNN's packed ones, or torch's own")
    args = ap.parse_args()

    from gptkit.generate.engine import Request, generate_ids
    from gptkit.torch.cpu import PackedLinear, for_cpu_decoding
    from gptkit.torch.generate import Engine
    from gptkit.torch.quantize import quantize
    from gptkit.torch.weights import load_model

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    n = args.new_tokens or (64 if device.type == "cpu" else 256)
    cases = args.cases or DEFAULT_CASES["cuda" if device.type == "cuda" else "cpu"]
    compile = {"auto": "auto", "yes": True, "no": False}[args.compile]
    pack = {"auto": None, "packed": True, "plain": False}[args.linears]
    with tempfile.TemporaryDirectory() as folder:
        hf = hf_model(args, folder).to(device, dtype).eval()
        ours = load_model(args.model or folder, device=device)[0].to(dtype)
        if args.mlx:
            from gptkit.mlx.weights import load_model as load_mlx

            mlx_model = load_mlx(args.model or folder)[0]
    cfg = ours.config
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = read_bandwidth(device)
    print(f"device {device} ({torch.get_num_threads()} threads), {args.dtype}, GPT-2 {ours.num_params() / 1e6:.0f}M, "
          f"{n} new tokens per row; read bandwidth {bandwidth / 1e9:.1f} GB/s; torch {torch.__version__}")
    print(f"{'case':>8} {'gptkit tok/s':>13} {'transformers':>13} {'ratio':>6} {'mlx tok/s':>10} {'of limit (batch 1) or x batch 1':>9}")
    g = torch.Generator(device="cpu").manual_seed(0)
    single = {}  # (prompt, sampled) -> gptkit's batch-1 tokens/s
    for case in cases:
        B, P, sampled = parse_case(case)
        prompts = torch.randint(0, cfg.vocab_size, (B, P), generator=g)
        settings = dict(temperature=1.0, top_k=50) if sampled else dict(temperature=0.0)
        requests = [Request(tuple(row), n, seed=i, **settings) for i, row in enumerate(prompts.tolist())]
        # as gptkit sample and serve run it: on a CPU in fp32, eager, oneDNN's linear for B rows where it is faster
        model = ours if compile is True else for_cpu_decoding(copy.deepcopy(ours), B, pack)
        engine = Engine(model, B, compile=compile)
        packed = any(isinstance(m, PackedLinear) for m in model.modules())
        ours_s = _timed(lambda: generate_ids(engine, requests), device)
        line = f"{case:>8} {B * n / ours_s:13,.1f}"
        if args.no_hf:
            line += f" {'-':>13} {'-':>6}"
        else:
            ids = prompts.to(device)
            kw = dict(do_sample=True, top_k=50, temperature=1.0) if sampled else dict(do_sample=False)
            with torch.no_grad():
                hf_s = _timed(lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                                  min_new_tokens=n, pad_token_id=0, **kw), device)
            line += f" {B * n / hf_s:13,.1f} {hf_s / ours_s:6.2f}"
        if args.mlx:
            from gptkit.mlx.generate import Engine as MLXEngine

            mlx_engine = MLXEngine(mlx_model, B)
            mlx_s = _timed(lambda: generate_ids(mlx_engine, requests), device)
            line += f" {B * n / mlx_s:10,.1f}"
        else:
            line += f" {'-':>10}"
        if args.quantize:
            q_engine = Engine(quantize(copy.deepcopy(ours), args.quantize), B, compile=compile)
            q_s = _timed(lambda: generate_ids(q_engine, requests), device)
            line += f"  {args.quantize} {B * n / q_s:,.1f} tok/s = {ours_s / q_s:.2f}x"
        if B == 1:  # bytes read per token: the weights, and on average half of the KV cache the prompt and tokens fill
            kv = 2 * cfg.n_layer * (P + n / 2) * cfg.n_embd * torch.finfo(dtype).bits // 8
            line += f" {(weight_bytes + kv) * n / ours_s / bandwidth:9.0%}"
            single[(P, sampled)] = n / ours_s
        elif (P, sampled) in single:  # the aggregate against the same case at batch 1 (the 4x at batch 8)
            line += f" {B * n / ours_s / single[(P, sampled)]:7.1f}x batch 1"
        print(line + ("  (oneDNN's packed linears)" if packed else ""), flush=True)


if __name__ == "__main__":
    main()
