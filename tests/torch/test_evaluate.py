"""gptkit eval: split loss / perplexity / bits per byte against a hand-computable bigram, and the HellaSwag scorer
on a handcrafted file whose answers are worked out by hand below."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gptkit.cli import main
from gptkit.config import GPTConfig
from gptkit.data.hellaswag import load_examples, parse_example, render
from gptkit.data.prepare import prepare
from gptkit.tokenizer.simple import CharTokenizer
from gptkit.torch.evaluate import hellaswag, score_endings, split_loss, token_byte_lengths
from gptkit.torch.model import build_model

HANDMADE = Path(__file__).parent.parent / "fixtures" / "hellaswag_handmade.jsonl"
LN2, LN8, LN14 = math.log(2), math.log(8), math.log(14)


def _bigram(vocab: int, block_size: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(GPTConfig(arch="bigram", vocab_size=vocab, block_size=block_size, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        model.wte.weight.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def char_data(tmp_path_factory, verdict):
    tmp = tmp_path_factory.mktemp("evaldata")
    (tmp / "t.txt").write_text(verdict[:6000], encoding="utf-8")
    prepare([str(tmp / "t.txt")], "char", tmp / "one", val_fraction=0.25, progress=False)
    prepare([str(tmp / "t.txt")], "char", tmp / "sharded", val_fraction=0.25, shard_tokens=333, progress=False)
    return tmp


def _bigram_nll(model, ids: np.ndarray) -> np.ndarray:
    """-log p(ids[t] | ids[t-1]) for t >= 1, straight from the table: a bigram ignores all earlier context."""
    table = torch.log_softmax(model.wte.weight.detach()[:, : model.config.vocab_size].double(), dim=-1).numpy()
    return -table[ids[:-1], ids[1:]]


@pytest.mark.parametrize("block_size,batch_size", [(7, 3), (64, 1), (1500, 2)])
def test_split_loss_equals_the_bigram_formula(char_data, block_size, batch_size):
    val = np.fromfile(char_data / "one" / "val.bin", dtype=np.uint16).astype(np.int64)
    tok = CharTokenizer.train(char_data.joinpath("t.txt").read_text())
    model = _bigram(tok.vocab_size, block_size)
    got = split_loss(model, char_data / "one", "val", batch_size=batch_size)
    nll = _bigram_nll(model, val)
    assert got["tokens"] == len(val) - 1  # every token after the first, predicted once
    assert got["loss"] == pytest.approx(nll.mean(), rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    # ASCII text and one character per token: one byte per predicted token
    assert got["bytes"] == len(val) - 1
    assert got["bits_per_byte"] == pytest.approx(nll.sum() / LN2 / (len(val) - 1), rel=1e-5)


def test_shards_read_as_one_stream_and_max_tokens(char_data):
    tok = CharTokenizer.train(char_data.joinpath("t.txt").read_text())
    model = _bigram(tok.vocab_size, 10)
    one = split_loss(model, char_data / "one", "val", batch_size=4)
    sharded = split_loss(model, char_data / "sharded", "val", batch_size=4)
    assert sharded["tokens"] == one["tokens"] and sharded["loss"] == pytest.approx(one["loss"], rel=1e-6)
    val = np.fromfile(char_data / "one" / "val.bin", dtype=np.uint16).astype(np.int64)
    first = split_loss(model, char_data / "one", "val", max_tokens=100)
    assert first["tokens"] == 99 and first["loss"] == pytest.approx(_bigram_nll(model, val[:100]).mean(), rel=1e-5)


def test_bits_per_byte_counts_utf8_bytes_and_not_specials(gpt2_tok):
    lengths = token_byte_lengths(gpt2_tok, 50257)
    assert lengths[gpt2_tok.encode(" the")[0]] == 4 and lengths[50256] == 0  # <|endoftext|> is not text
    assert lengths[gpt2_tok.encode("é")[0]] == 2


def test_vocab_mismatch_is_refused(char_data):
    with pytest.raises(ValueError, match="prepared with tokenizer 'char'.*evaluate on data prepared with its tokenizer"):
        split_loss(_bigram(50), char_data / "one")


# -- HellaSwag ---------------------------------------------------------------------------------------------------
# The handmade file's vocabulary is " abcdxy" plus "." (8 tokens). The bigram below puts logit ln 7 on the
# transitions " "->a, a->b, b->c, c->d and 0 elsewhere, so a favoured next token has p = 7/14 = 1/2 (loss ln 2),
# any other token after a, b, c or " " has p = 1/14 (ln 14), and every token after d, x, y, "." has p = 1/8 (ln 8).
# Each row scores " " + ending; " " follows the context's last character d (ln 8).
#   ex 1 (label 0): "ab" ln8+ln2+ln2 = 3.466 (mean 1.155); "xy" ln8+ln14+ln8 = 6.798; "ba", "ca" ln8+2 ln14 = 7.358
#                   -> acc picks 0, acc_norm picks 0: both right
#   ex 2 (label 0): "abcd" ln8+4 ln2 = 4.852 (mean 0.970); "x" ln8+ln14 = 4.719 (mean 2.359); "yy", "dd" 6.798
#                   -> the sum prefers the short "x" (1: wrong), the mean prefers "abcd" (0: right)
#   ex 3 (label 0): "xy" 6.798; "ab" 3.466; "yx" 6.798; "dx" 6.798 -> both pick 1: wrong
# acc = 1/3, acc_norm = 2/3.
HAND_SUMS = [[LN8 + 2 * LN2, 2 * LN8 + LN14, LN8 + 2 * LN14, LN8 + 2 * LN14],
             [LN8 + 4 * LN2, LN8 + LN14, 2 * LN8 + LN14, 2 * LN8 + LN14],
             [2 * LN8 + LN14, LN8 + 2 * LN2, 2 * LN8 + LN14, 2 * LN8 + LN14]]


def _hand_bigram():
    tok = CharTokenizer(" abcdxy.")
    model = build_model(GPTConfig(arch="bigram", vocab_size=8, block_size=16, n_layer=1, n_head=1, n_embd=8)).eval()
    with torch.no_grad():
        model.wte.weight.zero_()
        for a, b in [(" ", "a"), ("a", "b"), ("b", "c"), ("c", "d")]:
            model.wte.weight[tok.encode(a)[0], tok.encode(b)[0]] = math.log(7)
    return model, tok


def test_hellaswag_on_the_handmade_file_gives_the_hand_computed_answers():
    model, tok = _hand_bigram()
    examples = load_examples(HANDMADE)
    for ex, want in zip(examples, HAND_SUMS):
        rows, starts = render(ex, tok, model.config.block_size)
        total, mean = score_endings(model, rows, starts, "cpu", torch.float32)
        np.testing.assert_allclose(total, want, atol=1e-5)
        np.testing.assert_allclose(mean, [w / (len(e) + 1) for w, e in zip(want, ex["endings"])], atol=1e-5)
    got = hellaswag(model, tok, examples)
    assert (got["preds"], got["preds_norm"]) == ([0, 1, 1], [0, 0, 1])
    assert got["acc"] == pytest.approx(1 / 3) and got["acc_norm"] == pytest.approx(2 / 3) and got["examples"] == 3


def test_render_keeps_the_ending_and_crops_context_from_the_left():
    tok = CharTokenizer(" abcdxy.")
    rows, starts = render({"ctx": "abcdabcd", "endings": ["xy", "a", "b", "c"], "label": 0}, tok, block_size=6)
    assert rows[0] == tok.encode("bcd xy") and starts[0] == 3
    assert rows[1] == tok.encode("abcd a") and starts[1] == 4
    with pytest.raises(ValueError, match="ending has 7 tokens; the model's block_size is 6"):
        render({"ctx": "a", "endings": ["abcdxy"] * 4, "label": 0}, tok, block_size=6)


@pytest.mark.parametrize("line,match", [
    ('{"ctx": "a", "endings": ["b", "c", "d", "e"]}', "without 'label'.*the test split has no labels"),
    ('{"endings": ["b", "c", "d", "e"], "label": 1}', "without 'ctx'"),
    ('{"ctx": "a", "endings": ["b", "c"], "label": 1}', "a list of 4 strings"),
    ('{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": 4}', "'label' must be 0, 1, 2 or 3"),
    ('not json', "not a JSON line"),
])
def test_bad_hellaswag_lines_name_the_line(line, match):
    with pytest.raises(ValueError, match=match):
        parse_example(line, "f.jsonl:7")


def test_hellaswag_string_labels_as_published():
    # the published files store label as an int; some copies store "2": both read as 2
    assert parse_example('{"ctx": "a", "endings": ["b", "c", "d", "e"], "label": "2"}', "x")["label"] == 2


def test_hellaswag_val_download_is_checked_by_content(monkeypatch, tmp_path):
    from gptkit.data import hellaswag as hs

    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path))
    line = HANDMADE.read_text().splitlines()[0] + "\n"
    with pytest.raises(ValueError, match="gave 3 examples, expected 10,042"):
        hs.find_file("val", download=lambda url: line.encode() * 3)
    assert not (tmp_path / hs.VAL.relpath).exists()
    path = hs.find_file("val", download=lambda url: line.encode() * hs.VAL_EXAMPLES)
    assert path == tmp_path / hs.VAL.relpath and len(load_examples(path)) == hs.VAL_EXAMPLES

    def offline(url):
        raise OSError("no network")

    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"download it by hand and put it at \S+hellaswag_val.jsonl .*; or pass "
                                                r"--hellaswag FILE.jsonl$"):
        hs.find_file("val", download=offline)


def test_cli_eval_data_and_hellaswag(tmp_path, capsys, tiny_gpt2_folder):
    from gptkit.data.prepare import resolve_data_dir

    data = resolve_data_dir("shakespeare_gpt2")
    rc = main(["eval", str(tiny_gpt2_folder), "--data", str(data), "--max-tokens", "2000", "--hellaswag",
               str(HANDMADE), "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["val"]["tokens"] == 1999 and doc["val"]["loss"] > 10  # random weights: about ln(50257) = 10.8
    assert doc["hellaswag"]["examples"] == 3 and 0 <= doc["hellaswag"]["acc_norm"] <= 1
    rc = main(["eval", str(tiny_gpt2_folder)])
    assert rc == 1 and "give --data DATA_DIR, --hellaswag FILE.jsonl (or val), or --chat TASK" in capsys.readouterr().err
    rc = main(["eval", str(tiny_gpt2_folder), "--data", "shakespeare_char", "-q"])
    assert rc == 1 and "prepared with tokenizer 'char' (vocab 65), which differs from the model's tokenizer ('gpt2')" \
        in capsys.readouterr().err
