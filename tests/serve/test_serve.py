"""`gptkit serve`'s API through the official `openai` client and raw HTTP, on loopback: completions equal `gptkit
sample`, streaming, n, stop strings, seeds; 32 concurrent streams equal the same requests one by one; a client that
goes away frees its rows; a full waiting room answers 503; bad requests get 4xx in OpenAI's error shape and the
server keeps serving; the tokenizer and runs endpoints; nothing outside --runs is reachable."""

import asyncio
import contextlib
import json
import time

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the API tests use the official client (a dev dependency)")

from gptkit.cli import main


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key="unused", max_retries=0)


def _sample(capsys, run, *argv):
    assert main(["sample", str(run), *argv]) == 0
    return capsys.readouterr().out


def test_models_and_completions_equal_gptkit_sample(client, served, capsys):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    r = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, temperature=0.8, top_p=0.9, seed=3,
                                  n=2, extra_body={"top_k": 20})
    printed = _sample(capsys, served["run"], "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0.8",
                      "--top-p", "0.9", "--top-k", "20", "--seed", "3", "--num-samples", "2")
    samples = [s.strip("\n")[len("ROMEO:"):] for s in printed.split("\n" + "-" * 40 + "\n")]
    assert [c.text for c in r.choices] == [s for s in samples]
    assert [c.finish_reason for c in r.choices] == ["length", "length"] and r.usage.completion_tokens == 80
    assert r.usage.prompt_tokens == 6 and r.usage.total_tokens == 86


def test_streaming_joins_to_the_same_text(client):
    kw = dict(model="tiny", prompt=["First", "Second"], max_tokens=30, temperature=1.0, seed=5, n=2)
    whole = client.completions.create(**kw)
    texts, finish = {}, {}
    for chunk in client.completions.create(stream=True, **kw):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            finish[c.index] = c.finish_reason or finish.get(c.index)
    assert [texts[i] for i in range(4)] == [c.text for c in whole.choices] and len(set(texts.values())) == 4
    assert set(finish.values()) == {"length"}


def test_seeds_and_stop_strings(client):
    kw = dict(model="tiny", prompt="\n", max_tokens=60, temperature=1.0)
    a, b, c = (client.completions.create(seed=s, **kw).choices[0].text for s in (7, 7, 8))
    assert a == b != c
    stop = a[10:12]
    cut = client.completions.create(seed=7, stop=[stop, "never seen"], **kw).choices[0]
    assert cut.text == a[: a.index(stop)] and cut.finish_reason == "stop"


def _bad(url, body, raw=None):
    r = httpx.post(url + "/v1/completions", content=raw if raw is not None else json.dumps(body),
                   headers={"Content-Type": "application/json"}, timeout=30)
    return r.status_code, r.json()["error"]


@pytest.mark.parametrize("body,raw,status,words", [
    (None, b"{not json", 400, "not valid JSON"),
    (None, b"[1, 2]", 400, "JSON object"),
    ({"model": "tiny", "prompt": 5}, None, 400, "'prompt'"),
    ({"model": "tiny", "prompt": "a", "max_tokens": "ten"}, None, 400, "'max_tokens'"),
    ({"model": "tiny", "prompt": "a", "max_tokens": 10**9}, None, 400, "from 0 to 300"),
    ({"model": "tiny", "prompt": "a", "temperature": -1}, None, 400, "'temperature'"),
    ({"model": "tiny", "prompt": "a", "n": 0}, None, 400, "'n'"),
    ({"model": "tiny", "prompt": "a", "top_p": 0}, None, 400, "'top_p'"),
    ({"model": "tiny", "prompt": "a", "stop": [""]}, None, 400, "'stop'"),
    ({"model": "tiny", "prompt": "a", "logprobs": 3}, None, 400, "not supported"),
    ({"prompt": "a"}, None, 400, "'model' is required"),
    ({"model": "tiny", "prompt": "ab" * 40}, None, 400, "context is 32 tokens"),
    ({"model": "nope", "prompt": "a"}, None, 404, "does not exist"),
    ({"model": "../tiny", "prompt": "a"}, None, 404, "does not exist"),
    ({"model": "/etc", "prompt": "a"}, None, 404, "does not exist"),
])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(served, body, raw, status, words):
    got, error = _bad(served["url"], body, raw)
    assert got == status and words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert httpx.get(served["url"] + "/health").json()["status"] == "ok"


def test_absolute_run_paths_and_symlinks_out_of_runs_are_refused(served, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (served["runs"] / "escape").symlink_to(served["run"].parent.parent / "nothing", target_is_directory=True)
    try:
        assert _bad(served["url"], {"model": str(served["run"]), "prompt": "a"})[0] == 404
        assert "escape" not in httpx.get(served["url"] + "/api/runs").text
        assert httpx.get(served["url"] + "/api/runs/..%2F..%2Fetc").status_code == 404
    finally:
        (served["runs"] / "escape").unlink()


async def stream_text(url, body, path="/v1/completions", piece=lambda c: c["text"]) -> str:
    """The text of a streamed request: each event's choices' pieces, joined (`piece`: a choice -> its text)."""
    text = ""
    async with httpx.AsyncClient(timeout=60) as http:
        async with http.stream("POST", url + path, json={**body, "stream": True}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    text += "".join(piece(c) for c in json.loads(line[6:])["choices"])
    return text


def test_32_concurrent_streams_equal_the_same_requests_one_by_one(client, served):
    bodies = [{"model": "tiny", "prompt": "ABC"[i % 3], "max_tokens": 25, "temperature": 1.0, "seed": i} for i in range(32)]
    alone = [client.completions.create(**b).choices[0].text for b in bodies]

    async def together():
        return await asyncio.gather(*(stream_text(served["url"], b) for b in bodies))

    assert asyncio.run(together()) == alone


def _idle(served, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = httpx.get(served["url"] + "/health").json()["models"]["tiny"]
        if state == {"running": 0, "waiting": 0}:
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_goes_away_frees_its_rows(served):
    body = {"model": "tiny", "prompt": "A", "max_tokens": 300, "temperature": 1.0, "n": 4, "stream": True}
    with httpx.stream("POST", served["url"] + "/v1/completions", json=body, timeout=30) as r:
        next(r.iter_lines())  # generating now
    assert _idle(served)


def test_a_full_waiting_room_answers_503(served):
    body = {"model": "tiny", "prompt": "A", "max_tokens": 300, "temperature": 1.0, "n": 8, "stream": True}
    with contextlib.ExitStack() as streams:
        for _ in range(4):  # 32 choices: 4 rows running, 28 waiting
            r = streams.enter_context(httpx.stream("POST", served["url"] + "/v1/completions", json=body, timeout=30))
            assert r.status_code == 200
        status, error = _bad(served["url"], {**body, "stream": False, "max_tokens": 5})
    assert status == 503 and "busy" in error["message"]
    assert _idle(served)


def test_tokenize_equals_the_tokenizer_cli(served, capsys, tmp_path):
    text = "Hello  world!\n\tTabs 🎉 <|endoftext|> ok"
    r = httpx.post(served["url"] + "/api/tokenize", json={"text": text, "tokenizer": "cl100k_base"}).json()
    (tmp_path / "t.txt").write_text(text)
    assert main(["tokenizer", "encode", "-t", "cl100k_base", str(tmp_path / "t.txt"), "--allowed-special", "all"]) == 0
    assert [t["id"] for t in r["tokens"]] == [int(i) for i in capsys.readouterr().out.split()]
    assert r["count"] == len(r["tokens"]) and r["chars"] == len(text) and r["bytes"] == len(text.encode())
    assert b"".join(text.encode()[t["start"]:t["end"]] for t in r["tokens"]) == text.encode()
    back = httpx.post(served["url"] + "/api/detokenize", json={"ids": [t["id"] for t in r["tokens"]],
                                                               "tokenizer": "cl100k_base"}).json()
    assert back["text"] == text
    run = httpx.post(served["url"] + "/api/tokenize", json={"text": "ROMEO", "tokenizer": "tiny"}).json()
    assert run["count"] == 5  # the run's char tokenizer
    assert httpx.post(served["url"] + "/api/tokenize", json={"text": 1}).status_code == 400
    assert httpx.post(served["url"] + "/api/detokenize", json={"ids": ["x"]}).status_code == 400


def test_merges_build_the_token_from_bytes(served):
    tree = httpx.get(served["url"] + "/api/merges", params={"tokenizer_name": "gpt2", "id": 31373}).json()["tree"]

    def leaves(node):
        return [node] if not node["parts"] else [x for p in node["parts"] for x in leaves(p)]

    assert tree["text"] == "hello" and "".join(n["text"] for n in leaves(tree)) == "hello"
    assert [p["text"] for p in tree["parts"]] == ["hell", "o"]  # GPT-2's merge 31373 - 256: ('hell', 'o')


def test_runs_and_their_metrics_while_a_line_is_being_written(served):
    runs = httpx.get(served["url"] + "/api/runs").json()["runs"]
    assert [r["name"] for r in runs] == ["tiny"] and runs[0]["config"]["model"]["n_embd"] == 32
    metrics = served["run"] / "metrics.jsonl"
    want = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert httpx.get(served["url"] + "/api/runs/tiny").json()["metrics"] == want
    original = metrics.read_text()
    try:
        with open(metrics, "a") as f:
            f.write('{"step": 9, "train_lo')  # a line half written by a training run
        assert httpx.get(served["url"] + "/api/runs/tiny").json()["metrics"] == want
    finally:
        metrics.write_text(original)
    assert httpx.get(served["url"] + "/api/runs/nope").status_code == 404
