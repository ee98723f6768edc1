"""The page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium; `.ci/run` installs it).
The tokenizer tab shows the ids and count of `gptkit tokenizer encode`, a generation streams into the page, the
runs tab draws the points of metrics.jsonl and gains one when a line is appended; the tabs work from the keyboard.
Screenshots of each tab are saved under the test's tmp_path."""

import json
import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (a dev dependency)")

from gptkit.cli import main

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page(served):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1366, "height": 860})
        page.goto(served["url"] + "/")
        yield page
        browser.close()


def test_tokenizer_tab_shows_the_ids_of_the_cli(page, served, tmp_path, capsys):
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
    page.screenshot(path=str(tmp_path / "tokenizer.png"), full_page=True)


def test_generation_streams_into_the_page(page, served, tmp_path):
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
    body = {"model": "tiny", "prompt": "ROMEO:", "max_tokens": 120, "temperature": 0.8, "top_p": 1, "top_k": 40,
            "seed": 1337}
    want = page.evaluate("async b => (await (await fetch('/v1/completions', {method: 'POST', body: JSON.stringify(b)}))"
                         ".json()).choices[0].text", body)
    assert page.text_content("#gen-out") == want
    assert "120 tokens" in page.text_content("#gen-stats") and "tokens/s" in page.text_content("#gen-stats")
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)


def test_runs_tab_draws_metrics_and_follows_a_training_run(page, served, tmp_path):
    page.click("#tab-runs")
    page.wait_for_selector("#run-list button")
    metrics = served["run"] / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    page.wait_for_function(f"document.querySelector('#chart').dataset.points == '{len(records)}'")
    drawn = page.eval_on_selector_all("circle.pt-val", "els => els.map(e => [Number(e.dataset.step), "
                                      "Number(e.dataset.loss)])")
    assert drawn == [[r["step"], pytest.approx(r["val_loss"])] for r in records]
    page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
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
