"""`gptkit serve` against hostile and careless input (issue 23): big bodies and texts answered at once while /health
answers, a non-streaming client that leaves frees its rows, no byte from outside --runs, a run trained while served
is served at its newest step, each model's own tokenizer, least-recently-used models and fair admission, and every
error in OpenAI's JSON shape (never a plain-text 500)."""

import contextlib
import json
import shutil
import socket
import time

import httpx
import pytest

pytest.importorskip("fastapi", reason='the server is optional: pip install "gptkit[serve]"')

from tests.conftest import serving as serve_app

from gptkit.cli import main
from gptkit.cli.serve import make_worker_factory
from gptkit.serve.app import Limits, create_app
from gptkit.serve.registry import Registry
from gptkit.serve.worker import Job, Worker

TINY = ["--n_layer=1", "--n_embd=32", "--n_head=2", "--block_size=32", "--eval_iters=2", "--progress=false",
        "--sample_tokens=0"]


def serving(registry, limits=Limits(max_tokens=300, max_n=8)):
    """A uvicorn server of `registry` on a free loopback port, for one test."""
    return serve_app(create_app(registry, limits))


def _train(out, *argv):
    assert main(["train", *TINY, f"--out_dir={out}", *argv]) == 0


def _health_ms(url) -> float:
    t = time.perf_counter()
    assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok"
    return 1000 * (time.perf_counter() - t)


def _raw(url, head: bytes, body_chunks) -> tuple[bytes, dict]:
    """Send a hand-made HTTP request (headers, then body chunks as given); the reply's status line and JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        with contextlib.suppress(OSError):  # the server may answer and close before the body is all sent
            for chunk in body_chunks:
                s.sendall(chunk)
        reply = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                if not (got := s.recv(65536)):
                    break
                reply += got
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_a_50_mb_body_is_refused_in_under_a_second_while_health_answers(served):
    """Item 2: a 50 MB prompt took 57 s to be refused, /health blocked throughout, 1.8 GB of memory."""
    url, size = served["url"], 50 * 2**20
    t = time.perf_counter()
    status, body = _raw(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % size, [b'{"model": "tiny", "prompt": "' + b"a" * 2**20])
    assert status == b"HTTP/1.1 413 Request Entity Too Large" and time.perf_counter() - t < 1.0
    assert body["error"]["code"] == "request_too_large"
    chunks = (b"%x\r\n%s\r\n" % (2**16, b"a" * 2**16) for _ in range(size // 2**16))  # no length declared
    t = time.perf_counter()
    status, body = _raw(url, b"POST /api/tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                        chunks)
    assert status.startswith(b"HTTP/1.1 413") and time.perf_counter() - t < 1.0
    assert _health_ms(url) < 1000


def test_tokenize_is_bounded(served):
    """Item 3: 2 MB of text took 22.6 s and a 104 MB reply."""
    r = httpx.post(served["url"] + "/api/tokenize", json={"text": "a" * 2_000_000}, timeout=10)
    assert r.status_code == 413
    r = httpx.post(served["url"] + "/api/tokenize", json={"text": "a" * 200_000}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "text" and "100,000" in r.json()["error"]["message"]


def _state(url):
    return httpx.get(url + "/health", timeout=5).json()["models"].get("tiny", {"running": 0, "waiting": 0})


def test_a_non_streaming_client_that_leaves_frees_its_rows_within_a_second(served):
    """Item 4: its rows stayed busy until the whole request was done (40 s measured)."""
    url = served["url"]
    body = json.dumps({"model": "tiny", "prompt": "A", "max_tokens": 300, "temperature": 1.0, "n": 8}).encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 10
        while _state(url)["running"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    gone = time.monotonic()
    while _state(url) != {"running": 0, "waiting": 0}:
        assert time.monotonic() - gone < 1.0, _state(url)
        time.sleep(0.02)


def test_no_byte_of_a_file_outside_runs_is_served(served, tmp_path):
    """Item 5: a run dir file that links out of --runs was followed (metrics served, a checkpoint loaded)."""
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"step": 1, "train_loss": 123456.0, "val_loss": 1.0}\n')
    linked = served["runs"] / "linked"
    shutil.copytree(served["run"], linked)
    (linked / "metrics.jsonl").unlink()
    (linked / "metrics.jsonl").symlink_to(secret)
    ckpt = next(p for p in linked.glob("*.safetensors"))
    outside = tmp_path / ckpt.name
    shutil.move(ckpt, outside)
    ckpt.symlink_to(outside)
    try:
        url = served["url"]
        replies = [httpx.get(url + "/api/runs/linked"), httpx.get(url + "/api/runs"),
                   httpx.post(url + "/v1/completions", json={"model": "linked", "prompt": "A", "max_tokens": 2}),
                   httpx.post(url + "/api/tokenize", json={"text": "A", "tokenizer": "linked"})]
        assert [r.status_code for r in replies] == [403, 200, 403, 403]
        assert all("123456" not in r.text for r in replies) and "linked" not in replies[1].text
        assert "step" not in next(m for m in httpx.get(url + "/v1/models").json()["data"] if m["id"] == "linked")
        assert replies[0].json()["error"]["code"] == "outside_runs"
    finally:
        shutil.rmtree(linked)


def test_a_run_trained_while_served_is_served_at_its_newest_step(tmp_path, capsys):
    """Item 6: the server kept the first checkpoint it loaded while `gptkit sample` read the newest."""
    runs = tmp_path / "runs"
    _train(runs / "live", "--max_iters=2", "--eval_interval=2")
    registry = Registry([], runs, make_worker_factory("cpu", batch_size=2, queue=8))
    body = {"model": "live", "prompt": "A", "max_tokens": 40, "temperature": 1.0, "seed": 1}
    with serving(registry) as url:
        first = httpx.post(url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
        worker = registry.loaded()["live"]
        assert httpx.get(url + "/v1/models").json()["data"][0]["step"] == 2
        assert main(["train", "--resume", str(runs / "live"), "--max_iters=6"]) == 0  # trains on while served
        now = httpx.post(url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
        assert registry.loaded()["live"] is not worker and worker.closed
        assert httpx.get(url + "/v1/models").json()["data"][0]["step"] == 6
        assert httpx.get(url + "/api/runs/live").json()["step"] == 6
    capsys.readouterr()
    argv = ["--prompt", "A", "--max-new-tokens", "40", "--temperature", "1.0", "--seed", "1"]
    assert main(["sample", str(runs / "live"), *argv]) == 0
    assert capsys.readouterr().out == "A" + now + "\n" and now != first


def test_tokenize_uses_each_models_own_tokenizer(tmp_path):
    """Item 7: /api/tokenize showed GPT-2's ids (like 33676) for a HF folder with a 65-character vocabulary."""
    _train(tmp_path / "run", "shakespeare_char_gpt2", "--max_iters=1", "--eval_interval=1")
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "hf")]) == 0
    registry = Registry([str(tmp_path / "hf")], None, make_worker_factory("cpu", batch_size=1, queue=4))
    with serving(registry) as url:
        r = httpx.post(url + "/api/tokenize", json={"text": "ROMEO", "tokenizer": str(tmp_path / "hf")}).json()
        assert r["count"] == 5 and max(t["id"] for t in r["tokens"]) < 65
        assert registry.loaded() == {}  # the tokenizer came without loading the weights


class _Engine:
    """An engine stand-in that records the order choices join in; `free` rows are set by the test."""

    def __init__(self):
        self.free, self.busy, self.order = 0, False, []

    def join(self, joining):
        self.order += [key for key, _ in joining]
        self.free -= len(joining)

    def cancel(self, key):
        pass


def test_waiting_jobs_are_admitted_one_choice_each_in_turn():
    """Item 8: the waiting room was first in, first out: a 3-token request waited behind all 16 choices of one."""
    from gptkit.tokenizer.load import get_tokenizer

    engine = _Engine()
    worker = Worker(engine, tok=get_tokenizer("gpt2"), model_config=None, queue_limit=64)
    big, small = Job([object()] * 4, (), lambda item: None), Job([object()], (), lambda item: None)
    worker.submit(big)
    worker.submit(small)
    engine.free = 5
    worker.wake.set()
    deadline = time.monotonic() + 5
    while len(engine.order) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert engine.order == [(id(big), 0), (id(small), 0), (id(big), 1), (id(big), 2), (id(big), 3)]
    worker.close()
    worker.thread.join(timeout=5)
    assert not worker.thread.is_alive()  # a closed, idle worker ends and lets its model go


def test_least_recently_used_models_are_unloaded_past_max_models(tmp_path):
    """Item 8: every model loaded stayed loaded (9 models, 697 MB)."""
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        _train(runs / name, "--max_iters=1", "--eval_interval=1")
    registry = Registry([], runs, make_worker_factory("cpu", batch_size=1, queue=4), max_models=2)
    with serving(registry) as url:
        for name in ("a", "b", "a", "c"):
            r = httpx.post(url + "/v1/completions", json={"model": name, "prompt": "A", "max_tokens": 2}, timeout=30)
            assert r.status_code == 200
        assert sorted(registry.loaded()) == ["a", "c"]  # b was the least recently used


@pytest.mark.parametrize("method,path,body,status,param,words", [
    ("POST", "/v1/completions", {"stream_options": "x"}, 400, "stream_options", "an object"),
    ("POST", "/v1/completions", {"stream_options": [1]}, 400, "stream_options", "an object"),
    ("POST", "/v1/completions", {"stream_options": {"include_usage": "yes"}}, 400, "include_usage", "true or false"),
    ("POST", "/v1/completions", {"stream": "no"}, 400, "stream", "true or false"),
    ("POST", "/v1/completions", {"frequency_penalty": 0.5}, 400, "frequency_penalty", "not supported"),
    ("POST", "/v1/completions", {"presence_penalty": -1}, 400, "presence_penalty", "not supported"),
    ("POST", "/v1/completions", {"prompt": "A\u00e9"}, 400, "prompt", "\u00e9"),  # not in the char vocabulary
    ("POST", "/api/tokenize", {"text": "tab\t", "tokenizer": "tiny"}, 400, "text", "\\t"),
    ("GET", "/api/merges?id=abc", None, 400, "id", "a token id"),
    ("GET", "/api/merges?tokenizer=nope", None, 404, "tokenizer", "no tokenizer 'nope'"),
    ("GET", "/api/merges?tokenizer_nam=gpt2", None, 400, "tokenizer_nam", "unknown query parameter"),
    ("GET", "/no/such/route", None, 404, None, "no route GET /no/such/route"),
    ("POST", "/api/tokenize", "[" * 100_000 + "]" * 100_000, 400, None, "nests JSON too deeply"),  # a 500 before
])
def test_mistakes_get_openai_shaped_4xx(served, method, path, body, status, param, words):
    """Items 9, 16, 20: these were plain-text 500s, FastAPI's 422 shape, silently ignored, or `param: null`."""
    if body is not None and path == "/v1/completions":
        body = {"model": "tiny", "prompt": "A", "max_tokens": 2, **body}
    raw = {"content": body} if isinstance(body, str) else {"json": body}
    r = httpx.request(method, served["url"] + path, timeout=30, **raw)
    error = r.json()["error"]
    assert (r.status_code, error["param"]) == (status, param) and words in error["message"], error
    assert set(error) == {"message", "type", "param", "code"}


def test_a_model_that_cannot_load_and_an_internal_error_answer_json(tmp_path, monkeypatch, capsys):
    """Item 10: `gptkit serve does/not/exist` and `gptkit serve gpt2` offline answered every request with a plain-text
    500 (the page: `Unexpected token 'I', "Internal S"...`)."""
    assert main(["serve", str(tmp_path / "does/not/exist")]) == 1
    assert "no such run dir or folder" in capsys.readouterr().err

    def offline(spec):
        raise OSError("[Errno 101] Network is unreachable")

    registry = Registry(["gpt2"], None, offline)
    with serving(registry) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "gpt2", "prompt": "A"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        assert "could not be loaded: [Errno 101] Network is unreachable" in r.json()["error"]["message"]
        monkeypatch.setattr(registry, "ids", lambda *runs: 1 / 0)
        r = httpx.get(url + "/v1/models", timeout=30)
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "ZeroDivisionError" in r.json()["error"]["message"]
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_a_big_metrics_file_is_thinned_and_read_incrementally(served):
    """Item 14: a 43 MB metrics.jsonl took 6 s and a 40 MB reply per poll, with /health blocked."""
    metrics = served["run"] / "metrics.jsonl"
    original = metrics.read_text()
    try:
        with open(metrics, "a") as f:
            f.writelines(json.dumps({"step": 10 + i, "train_loss": 1.0, "val_loss": 1.0}) + "\n" for i in range(30_000))
        r = httpx.get(served["url"] + "/api/runs/tiny", timeout=30).json()
        n = original.count("\n") + 30_000
        assert r["records"] == n and len(r["metrics"]) == 2_000 and r["metrics"][-1]["step"] == 30_009
        with open(metrics, "a") as f:
            f.write(json.dumps({"step": 40_000, "train_loss": 1.0, "val_loss": 1.0}) + "\n")
        r = httpx.get(served["url"] + "/api/runs/tiny", timeout=30).json()
        assert r["records"] == n + 1 and r["metrics"][-1]["step"] == 40_000
    finally:
        metrics.write_text(original)
    assert httpx.get(served["url"] + "/api/runs/tiny").json()["records"] == original.count("\n")
