"""The page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium; `.ci/run` installs it).
The tokenizer tab shows the ids and count of `gptkit tokenizer encode`, a generation streams into the page, the
runs tab draws the points of metrics.jsonl and gains one when a line is appended; the tabs work from the keyboard.
The Chat tab (issue 25): a two-turn chat streams in and equals the API's replies, Stop interrupts a reply, a base
model shows the server's message, and typed or generated HTML stays text; the Runs tab compares a base run and its
finetuned run on one chart. The unhappy paths (issue 23): a server error shown as its message, an empty Temperature meaning the server's default
and a bad one flagged before sending, a token count that counts tokens, no runs, a run with no evaluations yet, the
run list polled one request at a time only while the Runs tab shows, a chart with ticks and axis titles, and a tab
bar that fits a phone. Screenshots are saved under $GPTKIT_SHOTS if set, else the test's tmp_path."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (a dev dependency)")

from tests.conftest import serving as serve_app

from gptkit.cli import main

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser(served):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, served):
    page = browser.new_page(viewport=DESKTOP)
    page.goto(served["url"] + "/")
    yield page
    page.close()


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport=DESKTOP): a fresh page, closed after the test."""
    pages = []

    def open_(url, viewport=DESKTOP):
        pages.append(browser.new_page(viewport=viewport))
        pages[-1].goto(url + "/")
        return pages[-1]

    yield open_
    for p in pages:
        p.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    d = Path(os.environ["GPTKIT_SHOTS"]) if os.environ.get("GPTKIT_SHOTS") else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


def serving(runs: Path):
    """A second `gptkit serve` app over its own runs folder: its URL, while the block runs."""
    from gptkit.cli.serve import make_worker_factory
    from gptkit.serve.app import create_app
    from gptkit.serve.registry import Registry

    return serve_app(create_app(Registry([], runs, make_worker_factory("cpu", batch_size=2, queue=8))))


def answering(**answer):
    """A route handler fulfilling every request with `answer` (status, content_type, body)."""
    return lambda route: route.fulfill(**answer)


def visible(page, selector) -> bool:
    return page.locator(selector).is_visible()


def test_tokenizer_tab_shows_the_ids_of_the_cli(page, served, tmp_path, capsys, shots):
    text = "Hello world!\n  Two spaces, a tab\tand é."
    page.fill("#tok-text", text)
    page.select_option("#tok-a", "gpt2")
    (tmp_path / "t.txt").write_text(text)
    assert main(["tokenizer", "encode", "-t", "gpt2", str(tmp_path / "t.txt")]) == 0
    want = [int(i) for i in capsys.readouterr().out.split()]
    page.wait_for_function(f"document.querySelector('#counts-a').textContent.startsWith('{len(want)} tokens')")
    ids = page.eval_on_selector_all("#tokens-a .tok", "els => els.map(e => Number(e.dataset.id))")
    assert ids == want
    assert "\u21b5" in page.inner_text("#tokens-a") and "\u00b7" in page.inner_text("#tokens-a")  # whitespace shown
    page.wait_for_function("document.querySelectorAll('#tokens-b .tok').length > 0")  # cl100k_base beside it
    page.focus("#tokens-a .tok >> nth=0")
    page.keyboard.press("Enter")
    page.wait_for_selector("#merges li")
    assert "15496" in page.inner_text("#merges")  # "Hello", GPT-2 id 15496, and its parts below
    page.screenshot(path=str(shots / "tokenizer.png"), full_page=True)


def test_generation_streams_into_the_page(page, served, shots):
    page.keyboard.press("Tab")
    page.focus("#tab-tokenizer")
    page.keyboard.press("ArrowRight")  # the keyboard reaches the Generate tab
    assert page.get_attribute("#tab-generate", "aria-selected") == "true"
    page.select_option("#gen-model", "tiny")
    page.fill("#gen-prompt", "ROMEO:")
    page.fill("#gen-max", "120")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-out').textContent.length > 0")
    page.wait_for_function("document.querySelector('#gen-stats').textContent.includes('tokens in')", timeout=30_000)
    body = {"model": "tiny", "prompt": "ROMEO:", "max_tokens": 120, "seed": 1337}  # the page's defaults: the API's
    want = page.evaluate("async b => (await (await fetch('/v1/completions', {method: 'POST', body: JSON.stringify(b)}))"
                         ".json()).choices[0].text", body)
    assert page.text_content("#gen-out") == want
    assert "120 tokens" in page.text_content("#gen-stats") and "tokens/s" in page.text_content("#gen-stats")
    page.screenshot(path=str(shots / "generate.png"), full_page=True)


def test_runs_tab_draws_metrics_and_follows_a_training_run(page, served, shots):
    page.click("#tab-runs")
    page.wait_for_selector("#run-list button")
    metrics = served["run"] / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    page.wait_for_function(f"document.querySelector('#chart').dataset.points == '{len(records)}'")
    drawn = page.eval_on_selector_all("circle.pt-val", "els => els.map(e => [Number(e.dataset.step), "
                                      "Number(e.dataset.loss)])")
    assert drawn == [[r["step"], pytest.approx(r["val_loss"])] for r in records]
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    original = metrics.read_text()
    try:
        last = records[-1]
        with open(metrics, "a") as f:  # what a training run does at its next evaluation
            f.write(json.dumps({**last, "step": last["step"] + 3, "tokens": last["tokens"] * 2,
                                "train_loss": last["train_loss"] - 0.1, "val_loss": last["val_loss"] - 0.1}) + "\n")
        page.wait_for_function(f"document.querySelector('#chart').dataset.points == '{len(records) + 1}'",
                               timeout=10_000)
        assert page.locator("circle.pt-val").count() == len(records) + 1
    finally:
        metrics.write_text(original)


# -- the unhappy paths (issue 23) ------------------------------------------------------------------------------------

def test_tokenizer_tab_shows_an_error_message_not_a_parse_error(open_page, served, shots):
    """A 4xx/5xx shows its JSON error.message (OpenAI's shape, or FastAPI's "detail"); a body that is not JSON shows
    the HTTP status, never "Unexpected token ..." or raw JSON. The real case: the tab's own default text (a tab, an
    emoji) under a char-level run's tokenizer."""
    page = open_page(served["url"])
    page.wait_for_function("document.querySelectorAll('#tokens-a .tok').length > 0")
    default_text = page.input_value("#tok-text")  # a tab and an emoji in it
    answers = [  # (status, content type, body) -> what the tab must say
        (400, "application/json", json.dumps({"error": {"message": "character '\\t' is not in the vocabulary",
                                                         "type": "invalid_request_error", "param": "text",
                                                         "code": None}}),
         "character '\\t' is not in the vocabulary"),
        (500, "text/plain", "Internal Server Error", "HTTP 500 Internal Server Error"),
        (502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>", "HTTP 502 Bad Gateway"),
        (404, "application/json", json.dumps({"detail": "Not Found"}), "Not Found"),
        (503, "application/json", json.dumps({"unexpected": [1, 2]}), "HTTP 503 Service Unavailable"),
    ]
    for status, kind, body, shown in answers:
        page.route("**/api/tokenize", answering(status=status, content_type=kind, body=body))
        page.fill("#tok-text", f"answer {status}")
        page.wait_for_function("m => document.querySelector('#counts-b').textContent === m", arg=shown,
                               timeout=5_000)
        text = page.text_content("#counts-b")
        assert "Unexpected token" not in text and "{" not in text
        if status == 500:
            page.screenshot(path=str(shots / "tokenizer-500-plain-text.png"), full_page=True)
        page.unroute("**/api/tokenize")

    page.fill("#tok-text", default_text)
    want = page.evaluate("async () => (await (await fetch('/api/tokenize', {method: 'POST', body: JSON.stringify("
                         "{text: document.querySelector('#tok-text').value, tokenizer: 'tiny'})})).json()).error.message")
    page.select_option("#tok-a", "tiny")
    page.wait_for_function("m => document.querySelector('#counts-a').textContent === m", arg=want)
    assert page.locator("#tokens-a .tok").count() == 0
    assert "error" in page.get_attribute("#counts-a", "class")
    page.wait_for_function("document.querySelector('#counts-b').textContent.endsWith('bytes')")  # cl100k_base's
    page.screenshot(path=str(shots / "tokenizer-char-run-error.png"), full_page=True)


def test_empty_temperature_means_the_server_default_and_bad_values_are_flagged(open_page, served, shots):
    page = open_page(served["url"])
    page.evaluate("""() => {
      const orig = window.fetch.bind(window);
      window.__sent = [];
      window.fetch = (url, init) => {
        if (String(url) === '/v1/completions') window.__sent.push(JSON.parse(init.body));
        return orig(url, init);
      };
    }""")
    page.click("#tab-generate")
    page.select_option("#gen-model", "tiny")
    page.fill("#gen-max", "5")
    assert "default" in page.get_attribute("#gen-temperature", "placeholder")
    page.fill("#gen-temperature", "")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-stats').textContent.includes('tokens in')", timeout=30_000)
    sent = page.evaluate("window.__sent")
    assert len(sent) == 1 and "temperature" not in sent[0] and sent[0]["max_tokens"] == 5

    for typed in ["3", "-0.5", "-"]:  # out of [0, 2], and not a number ("-" alone: the field's value reads "")
        page.fill("#gen-temperature", "")
        page.type("#gen-temperature", typed)
        page.click("#gen-go")
        page.wait_for_function("document.querySelector('#gen-error').textContent.includes('Temperature')")
        assert visible(page, "#gen-error")
        assert page.get_attribute("#gen-temperature", "aria-invalid") == "true"
        if typed == "3":
            page.screenshot(path=str(shots / "generate-bad-temperature.png"), full_page=True)
    assert len(page.evaluate("window.__sent")) == 1  # nothing sent while the field is wrong

    page.fill("#gen-temperature", "0.8")
    page.wait_for_function("!document.querySelector('#gen-error').textContent")
    assert page.get_attribute("#gen-temperature", "aria-invalid") != "true"
    page.click("#gen-go")
    page.wait_for_function("window.__sent.length === 2")
    assert page.evaluate("window.__sent[1].temperature") == 0.8


def test_streaming_counter_counts_tokens_or_says_chunks(open_page, served):
    """While streaming, the page cannot know tokens (a chunk's text may hold several): it says "chunks"; the final
    usage chunk's completion_tokens gives the tokens."""
    page = open_page(served["url"])
    page.click("#tab-generate")
    page.select_option("#gen-model", "tiny")
    page.fill("#gen-max", "200")
    page.evaluate("""() => {
      window.__stats = [];
      const el = document.querySelector('#gen-stats');
      new MutationObserver((records) => {  // every text the line held, even several set in one task
        for (const r of records) for (const n of r.addedNodes) window.__stats.push(n.textContent);
      }).observe(el, {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-stats').textContent.includes('tokens in')", timeout=30_000)
    seen = [s for s in page.evaluate("window.__stats") if s]
    live, final = seen[:-1], seen[-1]
    assert live and all(re.search(r"\d+ chunks? ", s) and "token" not in s for s in live), live  # "1 chunk", "2 chunks"
    assert final.startswith("200 tokens in") and "tokens/s" in final


def test_runs_poll_one_request_at_a_time_only_while_the_runs_tab_shows(open_page, served):
    page = open_page(served["url"])
    page.evaluate("""() => {  // every /api/runs answer takes 2.5 s more
      const orig = window.fetch.bind(window);
      window.__net = {inflight: 0, max: 0, started: 0, delay: 2500, quietSince: 0};
      window.fetch = async (url, init) => {
        const n = window.__net;
        if (!String(url).startsWith('/api/runs')) return orig(url, init);
        n.started++; n.inflight++; n.max = Math.max(n.max, n.inflight);
        try { await new Promise((r) => setTimeout(r, n.delay)); return await orig(url, init); }
        finally { n.inflight--; n.quietSince = performance.now(); }
      };
    }""")
    net = lambda: page.evaluate("window.__net")  # noqa: E731
    # one poll may ask twice in a row (the list, then the run): settled is no request for 0.5 s, not a gap between
    settled = "window.__net.inflight === 0 && performance.now() - window.__net.quietSince > 500"
    page.click("#tab-runs")
    page.wait_for_function("document.querySelector('#chart').dataset.points > 0", timeout=15_000)
    page.wait_for_timeout(5_000)
    assert net()["max"] == 1, net()  # setInterval would have had several waiting on the slow server

    page.click("#tab-tokenizer")  # the Runs tab hidden: its polling stops
    page.wait_for_function(settled, timeout=10_000)
    before = net()["started"]
    page.wait_for_timeout(3_000)
    assert net()["started"] == before

    page.evaluate("window.__net.delay = 0")
    page.click("#tab-runs")
    page.wait_for_function(f"window.__net.started > {before}", timeout=5_000)
    page.evaluate("""() => {  // the browser tab hidden: polling backs off
      Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
      Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
      document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_function(settled, timeout=5_000)
    before = net()["started"]
    page.wait_for_timeout(3_000)
    assert net()["started"] == before
    page.evaluate("""() => {
      delete document.hidden; delete document.visibilityState;
      document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_function(f"window.__net.started > {before}", timeout=2_000)  # and at once when it shows again


def test_runs_tab_says_what_to_do_with_no_runs_and_no_evaluations(open_page, served, tmp_path, shots):
    """No runs: an empty state naming the command (and the runs folder when /api/runs gives it), no Sample button.
    A run dir appears: the list refreshes by itself. No metrics yet: say so, no empty chart; then a point appears."""
    runs = tmp_path / "runs"
    runs.mkdir()
    with serving(runs) as url:
        page = open_page(url)
        page.click("#tab-runs")
        page.wait_for_selector("#runs-empty", state="visible")
        assert "No runs yet" in page.text_content("#runs-empty")
        assert "gptkit train --out_dir=" in page.text_content("#runs-empty")
        assert not visible(page, "#run-sample") and not visible(page, "#chart")
        page.screenshot(path=str(shots / "runs-empty.png"), full_page=True)

        def with_root(route):
            answer = route.fetch()
            route.fulfill(response=answer, json={**answer.json(), "runs_dir": "/srv/gptkit/runs"})

        page.route("**/api/runs", with_root)
        page.wait_for_function("document.querySelector('#runs-empty').textContent.includes("
                               "'gptkit train --out_dir=/srv/gptkit/runs/NAME')", timeout=10_000)
        page.screenshot(path=str(shots / "runs-empty-runs-dir-known.png"), full_page=True)
        page.unroute("**/api/runs")

        (runs / "fresh").mkdir()  # a run that has just started: config.json, no metrics.jsonl yet
        shutil.copy(served["run"] / "config.json", runs / "fresh" / "config.json")
        page.wait_for_selector("#run-list button", timeout=10_000)
        assert not visible(page, "#runs-empty")
        page.wait_for_selector("#chart-empty", state="visible", timeout=5_000)
        assert "no evaluations yet" in page.text_content("#chart-empty").lower()
        assert not visible(page, "#chart") and not visible(page, ".legend")
        page.screenshot(path=str(shots / "runs-no-evaluations.png"), full_page=True)

        (runs / "fresh" / "metrics.jsonl").write_text("")  # created, still empty
        page.wait_for_timeout(1_500)
        assert visible(page, "#chart-empty")
        first = json.loads((served["run"] / "metrics.jsonl").read_text().splitlines()[0])
        (runs / "fresh" / "metrics.jsonl").write_text(json.dumps(first) + "\n")
        page.wait_for_function("document.querySelector('#chart').dataset.points == '1'", timeout=5_000)
        assert visible(page, "#chart") and not visible(page, "#chart-empty")
        page.wait_for_function("document.querySelector('#run-list button').textContent.includes('(1)')",
                               timeout=10_000)  # the list's counts refresh too, unclicked

        (runs / "later").mkdir()
        shutil.copy(served["run"] / "config.json", runs / "later" / "config.json")
        page.wait_for_function("document.querySelectorAll('#run-list button').length === 2", timeout=10_000)


def test_chart_has_ticks_with_compact_numbers_and_axis_titles(open_page, served, shots):
    page = open_page(served["url"])
    assert page.evaluate("[102400, 1536, 3000, 999, 0, 1500000, 2e9].map(compact)") == [
        "102.4k", "1.54k", "3k", "999", "0", "1.5M", "2B"]
    page.click("#tab-runs")
    page.wait_for_function("document.querySelector('#chart').dataset.points > 0")
    page.select_option("#run-x", "tokens")
    page.wait_for_function("document.querySelector('#chart .x-title')?.textContent === 'tokens'")
    ticks = page.eval_on_selector_all("#chart .x-tick", "els => els.map(e => e.textContent)")
    last = json.loads((served["run"] / "metrics.jsonl").read_text().splitlines()[-1])["tokens"]  # 3072 in the fixture
    assert len(ticks) >= 3 and ticks[0] == "0" and all(re.fullmatch(r"\d{1,3}(\.\d{1,2})?[kMB]?", t) for t in ticks), ticks
    assert ticks[-1].endswith("k")  # thousands of tokens, written compactly
    assert page.text_content("#chart .y-title") == "loss"
    assert f"{last}" not in page.text_content("#chart")  # no raw "3072 tokens" at the end any more
    page.screenshot(path=str(shots / "runs-chart-tokens.png"), full_page=True)
    page.select_option("#run-x", "step")
    page.wait_for_function("document.querySelector('#chart .x-title')?.textContent === 'step'")
    assert len(page.eval_on_selector_all("#chart .x-tick", "els => els.map(e => e.textContent)")) >= 3


def test_tab_bar_fits_a_phone(open_page, served, shots):
    page = open_page(served["url"], PHONE)
    page.wait_for_function("document.querySelectorAll('#tokens-a .tok').length > 0")
    boxes = [page.locator(f"#tab-{t}").bounding_box() for t in ("tokenizer", "generate", "chat", "runs")]
    assert len({round(b["y"]) for b in boxes}) == 1, boxes  # one row
    assert all(b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] for b in boxes), boxes
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-tokenizer.png"), full_page=True)
    page.click("#tab-generate")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-generate.png"), full_page=True)
    page.click("#tab-chat")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-chat.png"), full_page=True)
    page.click("#tab-runs")
    page.wait_for_function("document.querySelector('#chart').dataset.points > 0")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(shots / "phone-runs.png"), full_page=True)


# -- the Chat tab (issue 25) -------------------------------------------------------------------------------------------

def _api_reply(page, messages, **settings) -> str:
    body = {"model": "chat", "messages": messages, **settings}
    return page.evaluate("async b => (await (await fetch('/v1/chat/completions', {method: 'POST', body: "
                         "JSON.stringify(b)})).json()).choices[0].message.content", body)


def _chat_tab(open_page, url):
    """A fresh page on the Chat tab of the server at `url` (the chat run's folder: models "chat" and "base")."""
    page = open_page(url)
    page.click("#tab-chat")
    page.wait_for_function("document.querySelector('#chat-model').options.length === 2")
    return page


def _canned(page, events):
    """Every chat request answered with these server-sent events (then [DONE]), as a stream."""
    page.route("**/v1/chat/completions", answering(status=200, content_type="text/event-stream", body="".join(
        f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"))


def _send(page, text):
    """Type a turn, send it with Enter, and wait for its whole reply."""
    replies = page.locator(".msg.assistant").count()
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")  # Enter sends
    page.wait_for_function("n => document.querySelectorAll('.msg.assistant').length === n && "
                           "!document.querySelector('.msg.pending') && !document.querySelector('#chat-send').disabled",
                           arg=replies + 1, timeout=30_000)
    assert "tokens in" in page.text_content("#chat-stats")


def test_a_two_turn_chat_streams_in_and_equals_the_api(open_page, chat_run, shots):
    with serving(chat_run.parent) as url:
        page = _chat_tab(open_page, url)
        assert page.input_value("#chat-model") == "chat"  # chat models first; the base one says what it is
        assert "base model" in page.inner_text("#chat-model")
        page.fill("#chat-temperature", "0.8")
        page.fill("#chat-seed", "5")
        page.fill("#chat-max", "12")
        page.fill("#chat-system", "Be brief.")
        page.type("#chat-input", "Reverse:")
        page.press("#chat-input", "Shift+Enter")  # a new line, not a send
        assert page.input_value("#chat-input") == "Reverse:\n" and page.locator(".msg").count() == 0
        settings = {"temperature": 0.8, "seed": 5, "max_tokens": 12}
        system = {"role": "system", "content": "Be brief."}
        _send(page, "Reverse: night")
        first = page.locator(".msg.assistant .text").nth(0).text_content()
        assert first == _api_reply(page, [system, {"role": "user", "content": "Reverse: night"}], **settings)
        _send(page, "Reverse: crown")
        second = page.locator(".msg.assistant .text").nth(1).text_content()
        assert second == _api_reply(page, [system, {"role": "user", "content": "Reverse: night"},
                                           {"role": "assistant", "content": first},
                                           {"role": "user", "content": "Reverse: crown"}], **settings)
        assert [m.text_content() for m in page.locator(".msg.user .text").all()] == ["Reverse: night", "Reverse: crown"]
        assert re.fullmatch(r"conversation: \d+ tokens of 128", page.text_content("#chat-context"))
        assert "tokens/s" in page.text_content("#chat-stats")
        page.screenshot(path=str(shots / "chat.png"), full_page=True)
        _send(page, "Reverse: sword")  # past the 128-token context: the oldest exchange is left out, and said
        third = page.locator(".msg.assistant .text").nth(2).text_content()
        assert third == _api_reply(page, [system, {"role": "user", "content": "Reverse: crown"},
                                          {"role": "assistant", "content": second},
                                          {"role": "user", "content": "Reverse: sword"}], **settings)
        assert "(the oldest 1 exchange left out to fit)" in page.text_content("#chat-context")
        assert page.locator(".msg").count() == 6  # the page still shows the whole conversation
        page.click("#chat-new")
        assert page.locator(".msg").count() == 0 and page.text_content("#chat-context") == ""


def test_stop_interrupts_a_reply_and_keeps_what_came(open_page, chat_run, shots):
    with serving(chat_run.parent) as url:
        page = _chat_tab(open_page, url)
        page.fill("#chat-temperature", "1")
        page.fill("#chat-max", "100000")  # past the server's limit: its refusal shown, the turn given back
        page.fill("#chat-input", "Reverse: night")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('#chat-error').textContent.includes('max_tokens')")
        assert page.locator(".msg").count() == 0 and page.input_value("#chat-input") == "Reverse: night"
        page.fill("#chat-max", "")
        # a long reply through a slow network (each event 150 ms after the last), so that Stop comes first
        events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}] + [
            {"choices": [{"index": 0, "delta": {"content": f"piece{k} "}}]} for k in range(60)]
        _canned(page, events)
        page.evaluate("""() => {
          const orig = window.fetch.bind(window);
          window.fetch = async (url, init) => {
            const r = await orig(url, init);
            if (String(url) !== '/v1/chat/completions' || !r.ok) return r;
            const events = (await r.text()).split(/(?<=\\n\\n)/);
            const slow = new ReadableStream({
              start(c) { init.signal.addEventListener('abort', () => c.error(new DOMException('stopped', 'AbortError'))); },
              async pull(c) {
                if (!events.length) { c.close(); return; }
                await new Promise(res => setTimeout(res, 150));
                if (!init.signal.aborted) c.enqueue(new TextEncoder().encode(events.shift()));
              }});
            return new Response(slow, {status: r.status, headers: r.headers});
          };
        }""")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('.msg.assistant .text')?.textContent.length > 0")
        page.click("#chat-stop")
        page.wait_for_function("document.querySelector('#chat-stats').textContent.startsWith('stopped after')")
        assert page.locator(".msg.assistant").count() == 1 and page.is_enabled("#chat-send")
        kept = page.locator(".msg.assistant .text").text_content()
        assert kept.startswith("piece0 ") and "piece59" not in kept  # what came stays; the rest never came
        page.screenshot(path=str(shots / "chat-stopped.png"), full_page=True)


def test_a_base_model_shows_the_servers_message_and_text_stays_text(open_page, chat_run, shots):
    with serving(chat_run.parent) as url:
        page = _chat_tab(open_page, url)
        page.select_option("#chat-model", "base")
        page.fill("#chat-input", "Reverse: night")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('#chat-error').textContent.includes('no chat format')")
        assert page.locator(".msg").count() == 0 and page.input_value("#chat-input") == "Reverse: night"
        assert page.text_content("#chat-stats") == ""  # the message once, where errors go
        page.screenshot(path=str(shots / "chat-base-model.png"), full_page=True)
        page.select_option("#chat-model", "chat")
        hostile = "<img src=x onerror=window.__owned=1><b>bold</b>"  # typed, and (below) as the model's reply
        events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                  {"choices": [{"index": 0, "delta": {"content": hostile}}]},
                  {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}]
        _canned(page, events)
        _send(page, hostile)
        assert page.locator("#chat-log img, #chat-log b").count() == 0
        assert [t.text_content() for t in page.locator(".msg .text").all()] == [hostile, hostile]
        assert page.evaluate("window.__owned === undefined")


def test_runs_tab_compares_a_base_run_and_its_finetuned_run(open_page, chat_run, shots):
    """Issue 25: several runs on one chart in distinct colours, x in steps, tokens or wall time, log y, the values
    under the pointer, and a summary line per run (parameters, tokens, time, best val, finetuned from)."""
    from gptkit.torch.weights import load_model

    params = load_model(chat_run, "auto", "cpu")[0].num_params()
    with serving(chat_run.parent) as url:
        page = open_page(url)
        page.click("#tab-runs")
        page.wait_for_function("document.querySelectorAll('#run-list button').length === 2")
        page.click("#run-list button[data-run='chat']")
        page.check("input[aria-label='compare base']")
        page.wait_for_function("document.querySelector('#chart').dataset.runs === '2'")
        strokes = page.eval_on_selector_all("polyline.line-val", "els => els.map(e => [e.dataset.run, e.style.stroke])")
        assert [r for r, _ in strokes] == ["chat", "base"] and strokes[0][1] != strokes[1][1]
        assert page.locator("polyline.line-train.dashed").count() == 2
        lines = page.eval_on_selector_all("#run-summaries li", "els => els.map(e => e.textContent)")
        assert len(lines) == 2 and lines[1].startswith(" base: ")
        base = str(chat_run.parent / "base")
        assert f"finetuned from {base}" in lines[0] and "best val" in lines[0] and "at step 30" in lines[0]
        assert f"{params / 1000:.2f}".rstrip("0").rstrip(".") + "k parameters" in lines[0]
        page.select_option("#run-x", "elapsed_s")
        page.wait_for_function("document.querySelector('#chart .x-title')?.textContent === 'seconds'")
        page.check("#run-logy")
        page.wait_for_function("document.querySelector('#chart .y-title')?.textContent === 'loss (log scale)'")
        box = page.locator("#chart").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
        readout = page.text_content("#chart-readout")
        assert "chat step" in readout and "base step" in readout and "val " in readout
        page.screenshot(path=str(shots / "runs-compare.png"), full_page=True)
        page.uncheck("input[aria-label='compare base']")
        page.wait_for_function("document.querySelector('#chart').dataset.runs === '1'")
