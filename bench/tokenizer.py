"""Tokenizer benchmark: BPE training beside HF `tokenizers`, encoding beside tiktoken and HF.

    python bench/tokenizer.py                 # everything (a few minutes on 2 cores)
    python bench/tokenizer.py --no-big        # tiny Shakespeare only

Training uses the GPT-4 split pattern in both libraries (HF: a Split pre-tokenizer with the same regex,
then ByteLevel), with the same number of threads/processes. The big corpus is built from local public
text: the shared reference texts, Python's standard library sources and Debian's documentation files,
concatenated up to --corpus-mb and cached in the temp folder. Every measurement runs in a fresh
subprocess so peak RSS is its own. Encoding is single-process, cold cache, same ranks for all three.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import DATA, build_corpus  # noqa: E402

# -- one measurement per subprocess -----------------------------------------------------------------


def _rss_mb() -> float:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(self_kb, child_kb) / 1024


def job_train_gptkit(path: str, vocab_size: int, workers: int) -> dict:
    from gptkit import Tokenizer
    from gptkit.files import iter_text_blocks

    t = time.perf_counter()
    tok = Tokenizer.train(iter_text_blocks(path), vocab_size, "gpt4", num_workers=workers, progress=False)
    return {"seconds": time.perf_counter() - t, "vocab": tok.vocab_size, "rss_mb": _rss_mb()}


def job_train_hf(path: str, vocab_size: int, workers: int) -> dict:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    from gptkit.tokenizer.encodings import GPT4_PATTERN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    t = time.perf_counter()
    tok.train([path], trainer)
    return {"seconds": time.perf_counter() - t, "vocab": tok.get_vocab_size(), "rss_mb": _rss_mb()}


def job_encode(path: str, which: str) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    if which == "gptkit":
        from gptkit import Tokenizer

        enc = Tokenizer.from_pretrained("gpt2").encode_ordinary
    elif which == "tiktoken":
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        from gptkit.tokenizer.encodings import GPT2_PATTERN

        ranks = data_gym_to_mergeable_bpe_ranks(str(DATA / "gpt2/vocab.bpe"), str(DATA / "gpt2/encoder.json"))
        enc = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={}).encode_ordinary
    else:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        hf = Tokenizer(models.BPE.from_file(str(DATA / "gpt2/encoder.json"), str(DATA / "gpt2/vocab.bpe")))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        enc = lambda s: hf.encode(s, add_special_tokens=False).ids  # noqa: E731
    t = time.perf_counter()
    n = len(enc(text))
    dt = time.perf_counter() - t
    return {"seconds": dt, "mb_per_s": len(text.encode()) / dt / 1e6, "tokens": n, "rss_mb": _rss_mb()}


JOBS = {"train_gptkit": job_train_gptkit, "train_hf": job_train_hf, "encode": job_encode}


def run_job(name: str, *args, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true" if threads > 1 else "false",
               TIKTOKEN_CACHE_DIR="", GPTKIT_DATA=str(DATA))
    cmd = [sys.executable, __file__, "--job", json.dumps([name, *args])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{name}{args} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_training(path: Path, sizes: list[int], threads: int, label: str) -> None:
    mb = path.stat().st_size / 1e6
    print(f"\n## training, GPT-4 pattern, {label} ({mb:.1f} MB), {threads} thread(s)/process(es) each")
    print(f"{'vocab':>7} {'gptkit s':>9} {'HF s':>7} {'ratio':>6} {'gptkit RSS':>11} {'HF RSS':>8}  got vocab")
    for v in sizes:
        g = run_job("train_gptkit", str(path), v, threads, threads=threads)
        h = run_job("train_hf", str(path), v, threads, threads=threads)
        print(f"{v:>7} {g['seconds']:>9.2f} {h['seconds']:>7.2f} {g['seconds'] / h['seconds']:>5.1f}x "
              f"{g['rss_mb']:>8.0f} MB {h['rss_mb']:>5.0f} MB  {g['vocab']} / {h['vocab']}")


def bench_encoding(path: Path, label: str) -> None:
    mb = path.stat().st_size / 1e6
    print(f"\n## encoding with GPT-2's ranks, {label} ({mb:.1f} MB), one thread, cold cache")
    res = {w: run_job("encode", str(path), w, threads=1) for w in ("gptkit", "tiktoken", "hf")}
    for w, r in res.items():
        print(f"{w:>9}: {r['mb_per_s']:6.2f} MB/s  ({r['tokens']:,} tokens)")
    g = res["gptkit"]["mb_per_s"]
    print(f"gptkit / tiktoken = {g / res['tiktoken']['mb_per_s']:.2f}x, gptkit / HF = {g / res['hf']['mb_per_s']:.2f}x")
    assert res["gptkit"]["tokens"] == res["tiktoken"]["tokens"], "gptkit and tiktoken disagree on the token count"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--no-big", action="store_true", help="skip the big corpus")
    ap.add_argument("--corpus-mb", type=int, default=68)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if args.job:
        name, *rest = json.loads(args.job)
        print(json.dumps(JOBS[name](*rest)))
        return
    shakespeare = DATA / "tinyshakespeare.txt"
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    bench_training(shakespeare, [1024, 4096, 32768], args.threads, "tiny Shakespeare")
    bench_encoding(shakespeare, "tiny Shakespeare")
    if not args.no_big:
        corpus = build_corpus(args.corpus_mb)
        bench_training(corpus, [32768], args.threads, "local corpus")
        small = Path(tempfile.gettempdir()) / "gptkit-bench-corpus-slice.txt"
        small.write_text(corpus.read_text(encoding="utf-8")[:20_000_000], encoding="utf-8")
        bench_encoding(small, "first 20M characters of the local corpus")


if __name__ == "__main__":
    main()
