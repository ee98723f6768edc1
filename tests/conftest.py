"""Shared fixtures: the reference data folder and tiktoken encodings built from it (never downloaded).

The reference files come from $GPTKIT_DATA (CI sets it to ../shared/data), else ../shared/data beside
the repository. Tests that need them fail, not skip, when they are missing.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent


# No example database, and hypothesis's own caches in a temp folder: by default it writes .hypothesis/
# into the working directory.
settings.register_profile("gptkit", database=None)
settings.load_profile("gptkit")
_HYPOTHESIS_HOME = None


def pytest_configure(config):
    global _HYPOTHESIS_HOME
    from hypothesis.configuration import set_hypothesis_home_dir

    _HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="gptkit-hypothesis-")
    set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config):
    if _HYPOTHESIS_HOME:
        shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


def _data_dir() -> Path:
    # resolved: a relative GPTKIT_DATA (the README says ../shared/data) must hold in the subprocesses the tests start
    # in other working directories too
    d = Path(os.environ.get("GPTKIT_DATA") or REPO.parent / "shared" / "data").resolve()
    if not (d / "tinyshakespeare.txt").is_file():
        pytest.fail(f"reference data not found at {d}; set GPTKIT_DATA to the shared/data folder", pytrace=False)
    return d


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _data_dir()


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    """Point gptkit's lookups at the reference data, its cache and the HF cache at temp folders, and stop
    tiktoken caching files under /tmp: tests write nowhere but temp folders."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GPTKIT_DATA", str(_data_dir()))
    mp.setenv("GPTKIT_CACHE", str(tmp_path_factory.mktemp("gptkit-cache")))
    mp.setenv("TIKTOKEN_CACHE_DIR", "")
    mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-hub")))  # never a user's real HF cache
    yield
    mp.undo()


@pytest.fixture(scope="session")
def shakespeare(data_dir) -> str:
    return (data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def taylorswift(data_dir) -> str:
    return (data_dir / "taylorswift.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def verdict(data_dir) -> str:
    return (data_dir / "the-verdict.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiktoken_gpt2(data_dir):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from gptkit.tokenizer.encodings import GPT2_PATTERN

    ranks = data_gym_to_mergeable_bpe_ranks(str(data_dir / "gpt2/vocab.bpe"), str(data_dir / "gpt2/encoder.json"))
    return tiktoken.Encoding("gpt2-ref", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="session")
def tiktoken_cl100k(data_dir):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from gptkit.tokenizer.encodings import GPT4_PATTERN
    from gptkit.tokenizer.encodings import CL100K_SPECIALS

    ranks = load_tiktoken_bpe(str(data_dir / "cl100k/cl100k_base.tiktoken"))
    return tiktoken.Encoding("cl100k-ref", pat_str=GPT4_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIALS)


@pytest.fixture(scope="session")
def gpt2_tok():
    from gptkit import Tokenizer

    return Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="session")
def cl100k_tok():
    from gptkit import Tokenizer

    return Tokenizer.from_pretrained("cl100k_base")


@pytest.fixture(scope="session")
def tiny_gpt2_folder(tmp_path_factory) -> Path:
    """A HF GPT-2 folder (config.json + model.safetensors) of a tiny random GPT with GPT-2's vocabulary and shapes'
    layout: what `gptkit export` writes and what a name like "gpt2" resolves to, without any download."""
    import torch

    from gptkit.config import GPTConfig
    from gptkit.hf.arch import write_hf
    from gptkit.torch.model import GPT
    from gptkit.torch.weights import model_tensors

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=64, n_layer=2, n_head=2, n_embd=32, bias=True)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    write_hf(config, model_tensors(GPT(config)), folder, eos_token_id=50256)
    return folder


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """A `gptkit serve` app on a free loopback port (uvicorn in a thread) over a runs folder holding one tiny char
    run, "tiny" (trained 6 steps), with small limits so the limits can be tested: batch 4, 32 choices waiting."""
    pytest.importorskip("fastapi", reason='the server is optional: pip install "gptkit[serve]"')
    from gptkit.cli import main
    from gptkit.cli.serve import make_worker_factory
    from gptkit.serve.app import Limits, create_app
    from gptkit.serve.registry import Registry

    runs = tmp_path_factory.mktemp("serve") / "runs"
    assert main(["train", "--n_layer=1", "--n_embd=32", "--n_head=2", "--block_size=32", f"--out_dir={runs / 'tiny'}",
                 "--max_iters=6", "--eval_interval=3", "--eval_iters=2", "--progress=false", "--sample_tokens=0"]) == 0
    registry = Registry([], runs, make_worker_factory("cpu", batch_size=4, queue=32))
    with serving(create_app(registry, Limits(max_tokens=300, max_n=8))) as url:
        yield {"url": url, "runs": runs, "run": runs / "tiny", "registry": registry}


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn in a thread on a free loopback port, until the block ends: its URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def start_training():
    """start(out_dir, options): a long training in a child process, returned once it is inside its loop (its step-0
    evaluation written, then a second for a few steps)."""
    import subprocess
    import sys
    import time

    def start(out_dir, options):
        cmd = [sys.executable, "-m", "gptkit", "train", *options, "--max_iters=1000000", "--eval_interval=1000000",
               f"--out_dir={out_dir}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out_dir / "metrics.jsonl").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1.0)  # a few steps
        return proc

    return start


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory, shakespeare) -> Path:
    """The built-in `reverse` chat task prepared with tiny Shakespeare's char tokenizer (+ the ChatML tokens: 67 ids)."""
    from gptkit import CharTokenizer
    from gptkit.cli import main

    tmp = tmp_path_factory.mktemp("chat")
    CharTokenizer.train(shakespeare).save(tmp / "char.model")
    assert main(["prepare", "--chat", "reverse", "-t", str(tmp / "char.model"), "-o", str(tmp / "d")]) == 0
    return tmp / "d"



@pytest.fixture(scope="session")
def chat_run(tmp_path_factory) -> Path:
    """A tiny chat run (context 128 tokens: two turns of `reverse`): a char base run of 1 step, finetuned 30 steps on
    the built-in `reverse` task (ChatML, vocab 67). Its replies are not good, but they are what every chat front end must agree on."""
    from gptkit.cli import main

    tmp = tmp_path_factory.mktemp("chat-run")
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=128", "--eval_iters=1", "--progress=false",
            "--sample_tokens=0"]
    assert main(["train", *tiny, "--max_iters=1", "--eval_interval=1", f"--out_dir={tmp / 'base'}"]) == 0
    assert main(["train", *tiny, "--max_iters=30", "--eval_interval=30", "--data=reverse", "--lr=3e-3",
                 f"--init_from={tmp / 'base'}", f"--out_dir={tmp / 'chat'}"]) == 0
    return tmp / "chat"


@pytest.fixture(scope="session")
def bpe_root(tmp_path_factory, shakespeare) -> Path:
    """A byte-level BPE trained here on tiny Shakespeare's first 100,000 characters (GPT-4's split, 320 ids with
    <|endoftext|>) as tok.model, that text as text.txt, and data/ prepared from it with it."""
    from gptkit.cli import main
    from gptkit.tokenizer.byte_level import Tokenizer

    root = tmp_path_factory.mktemp("bpe")
    tok = Tokenizer.train(shakespeare[:100_000], vocab_size=320, special_tokens=["<|endoftext|>"], progress=False)
    tok.save(root / "tok.model")
    (root / "text.txt").write_text(shakespeare[:100_000])
    assert main(["prepare", str(root / "text.txt"), "-t", str(root / "tok.model"), "-o", str(root / "data"), "-q"]) == 0
    return root

