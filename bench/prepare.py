"""`gptkit prepare` benchmark: MB/s beside a tiktoken-based prepare, and peak RSS on a big corpus.

    python bench/prepare.py                  # 68 MB corpus for speed, ~500 MB (by repetition) for RSS
    python bench/prepare.py --big-mb 0       # speed only
    python bench/prepare.py --web-mb 500     # also: the corpus as FineWeb-like parquet shards vs the same as JSONL

Both prepares read the corpus in the same blocks, use the same number of processes/threads (all
cores), the GPT-2 tokenizer, and write uint16 ids; their outputs are compared byte for byte. Each run is
a fresh subprocess; peak RSS is the largest of that process and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import DATA, build_corpus  # noqa: E402


def job_gptkit(src: str, out: str, workers: int) -> dict:
    from gptkit.data.prepare import prepare

    t = time.perf_counter()
    meta = prepare([src], "gpt2", out, val_fraction=0.0, num_workers=workers, progress=False)
    return {"seconds": time.perf_counter() - t, "tokens": meta["splits"]["train"]["tokens"], "rss_mb": _peak_mb()}


def job_web(src: str, out: str, workers: int) -> dict:
    """prepare of a folder of parquet or JSONL shards into 10M-token shards (a web corpus's path)."""
    from gptkit.data.prepare import prepare

    t = time.perf_counter()
    meta = prepare([src], "gpt2", out, val_fraction=0.01, shard_tokens=10_000_000, num_workers=workers, progress=False)
    tokens = meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"]
    return {"seconds": time.perf_counter() - t, "tokens": tokens, "rss_mb": _peak_mb()}


def write_web_shards(corpus: Path, folder: Path, target_mb: int, doc_chars: int = 4000) -> tuple[Path, Path]:
    """The corpus (repeated up to target_mb) cut into ~doc_chars documents, as 4 parquet files with a `text` column
    and as 4 JSONL files; returns the two folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = corpus.read_text(encoding="utf-8")
    docs = [text[i:i + doc_chars] for i in range(0, len(text), doc_chars)]
    reps = max(1, round(target_mb * 1e6 / len(text.encode())))
    pqd, jsd = folder / "parquet", folder / "jsonl"
    pqd.mkdir(parents=True)
    jsd.mkdir(parents=True)
    per = -(-len(docs) * reps // 4)
    every = docs * reps
    for k in range(4):
        part = every[k * per:(k + 1) * per]
        pq.write_table(pa.table({"text": part}), pqd / f"{k:03d}_00000.parquet", row_group_size=1000)
        with open(jsd / f"{k:03d}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": d}) + "\n" for d in part)
    return pqd, jsd


def _peak_mb() -> float:
    """The largest peak RSS of this process and its (finished) worker processes."""
    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def job_tiktoken(src: str, out: str, workers: int) -> dict:
    import numpy as np
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from gptkit.files import iter_text_blocks
    from gptkit.tokenizer.encodings import GPT2_PATTERN

    ranks = data_gym_to_mergeable_bpe_ranks(str(DATA / "gpt2/vocab.bpe"), str(DATA / "gpt2/encoder.json"))
    enc = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    t = time.perf_counter()
    n = 0
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "train.bin", "wb") as f:
        group = []
        for block in iter_text_blocks(src, block_bytes=1 << 20):
            group.append(block)
            if len(group) == 8 * workers:
                for ids in enc.encode_ordinary_batch(group, num_threads=workers):
                    np.asarray(ids, dtype=np.uint16).tofile(f)
                    n += len(ids)
                group = []
        for ids in enc.encode_ordinary_batch(group, num_threads=workers):
            np.asarray(ids, dtype=np.uint16).tofile(f)
            n += len(ids)
    return {"seconds": time.perf_counter() - t, "tokens": n}


def run(job: str, src: Path, out: Path, workers: int) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import prepare as b; " \
           f"print(json.dumps(b.job_{job}({str(src)!r}, {str(out)!r}, {workers})))"
    env = dict(os.environ, GPTKIT_DATA=str(DATA), TIKTOKEN_CACHE_DIR="")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in src.iterdir()) if src.is_dir() else src.stat().st_size
    res["mb_per_s"] = size / res["seconds"] / 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-mb", type=int, default=68)
    ap.add_argument("--big-mb", type=int, default=500, help="size of the RSS corpus (0: skip)")
    ap.add_argument("--web-mb", type=int, default=0, help="text size of the parquet/JSONL shard run (0: skip)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    corpus = build_corpus(args.corpus_mb)
    tmp = Path(tempfile.mkdtemp(prefix="gptkit-bench-prepare-"))
    try:
        mb = corpus.stat().st_size / 1e6
        print(f"## prepare, gpt2 tokenizer, {mb:.1f} MB local corpus, {args.workers} processes/threads")
        g = run("gptkit", corpus, tmp / "g", args.workers)
        peak_small = g["rss_mb"]
        t = run("tiktoken", corpus, tmp / "t", args.workers)
        same = (tmp / "g/train.bin").read_bytes() == (tmp / "t/train.bin").read_bytes()
        print(f"  gptkit   {g['mb_per_s']:6.2f} MB/s  {g['tokens']:,} tokens  peak RSS {peak_small:.0f} MB")
        print(f"  tiktoken {t['mb_per_s']:6.2f} MB/s  {t['tokens']:,} tokens")
        print(f"  gptkit / tiktoken = {g['mb_per_s'] / t['mb_per_s']:.2f}x; outputs identical: {same}")
        shutil.rmtree(tmp / "t")
        if args.big_mb:
            big = tmp / "big.txt"
            with open(big, "wb") as f:
                data = corpus.read_bytes()
                while f.tell() < args.big_mb * 1_000_000:
                    f.write(data)
            shutil.rmtree(tmp / "g")
            g = run("gptkit", big, tmp / "g", args.workers)
            peak = g["rss_mb"]
            print(f"## the same, {big.stat().st_size / 1e6:.0f} MB corpus (the above repeated)")
            print(f"  gptkit   {g['mb_per_s']:6.2f} MB/s  {g['tokens']:,} tokens  peak RSS {peak:.0f} MB "
                  f"(vs {peak_small:.0f} MB on {mb:.0f} MB)")
        if args.web_mb:
            # written by a child process: a parent that held the shards' text would pass its peak RSS on to the
            # measured jobs (Linux keeps ru_maxrss across fork + exec)
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import prepare as b; "
                    f"from pathlib import Path; b.write_web_shards(Path({str(corpus)!r}), Path({str(tmp / 'web')!r}), "
                    f"{args.web_mb})")
            subprocess.run([sys.executable, "-c", code], check=True)
            pqd, jsd = tmp / "web" / "parquet", tmp / "web" / "jsonl"
            print(f"## a web corpus: ~{args.web_mb} MB of text in 4,000-char documents, 4 shards, into 10M-token shards")
            for name, folder in (("parquet", pqd), ("jsonl", jsd)):
                shutil.rmtree(tmp / "w", ignore_errors=True)
                w = run("web", folder, tmp / "w", args.workers)
                print(f"  {name:8s} {w['mb_per_s']:6.2f} MB/s of files  {w['tokens']:,} tokens  {w['seconds']:.1f} s  "
                      f"peak RSS {w['rss_mb']:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
