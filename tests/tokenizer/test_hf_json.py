"""tokenizer.json both ways against HF `tokenizers` itself: gptkit's tokenizers (gpt2, cl100k_base, trained byte-level
BPE, char) exported give HF the same ids; tokenizers trained by HF (GPT-2, GPT-4, Qwen and Llama 3 split patterns,
added special tokens) give gptkit the same ids; on tiny Shakespeare, the taylorswift text and adversarial strings.
What gptkit cannot reproduce is refused with one line."""

import json

import pytest

from gptkit.tokenizer.bpe import encode_by_merges
from gptkit.tokenizer.byte_level import Tokenizer
from gptkit.tokenizer.hf_json import all_pair_merges, byte_chars, interval_plus
from gptkit.tokenizer.load import load_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="test dependency: pip install -e '.[dev]'")
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402

ADVERSARIAL = [
    "", " ", "  ", "\n", "\r\n", "\t\t x", "a\u00a0b", "\u3000x", "\x1c\x1d\x1e\x1f", "\x85", "\u2028\u2029", "\ufeff",
    "😀👍🏽 emoji", "e\u0301", "ﬁ", "İstanbul ǅ", "123456789 1234", "٣٤٥ ١٢", "x" * 3000, " " * 1000 + "a", "\n" * 50,
    "don't I'M YOU'LL we've 'S", "<|endoftext|><|endoftext|>", "<|endoftext", "a<|endoftext|>b", "中文字符测试",
    "한국어", "\u1100\u1161\u11a8 A\u030a Å \u212b", "\x00\x01 \x7f", "'s's's", "  \n  \n", "x  ", "a\r\rb", "<|im_start|>user\nhi<|im_end|>",
]
# the split patterns as HF writes them (Oniguruma): GPT-4's as in transformers' tiktoken converter, Qwen2/3's and
# Llama 3's as in their published tokenizer.json files
GPT4_HF = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
QWEN_HF = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_HF = QWEN_HF.replace(r"|\p{N}|", r"|\p{N}{1,3}|")


@pytest.fixture(scope="module")
def texts(shakespeare, taylorswift):
    return [shakespeare[:300_000], taylorswift, *ADVERSARIAL]


def _hf(doc: dict):
    return tokenizers.Tokenizer.from_str(json.dumps(doc))


def _assert_same_ids(hf, ours, texts):
    for text in texts:
        want = ours.encode(text, allowed_special="all")  # HF always matches added tokens
        assert hf.encode(text).ids == want, repr(text[:40])
        assert hf.decode(want, skip_special_tokens=False) == ours.decode(want)


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_published_encodings_export_with_their_ids(name, texts, gpt2_tok, cl100k_tok):
    ours = gpt2_tok if name == "gpt2" else cl100k_tok
    hf = _hf(ours.to_tokenizer_json())
    _assert_same_ids(hf, ours, texts)
    assert hf.encode("hello <|endoftext|>").ids == ([31373, 220, 50256] if name == "gpt2" else [15339, 220, 100257])


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", None])
def test_gptkit_trained_bpe_exports_with_its_ids(pattern, texts, shakespeare, tmp_path):
    ours = Tokenizer.train(shakespeare[:100_000], vocab_size=400, pattern=pattern,
                           special_tokens=["<|endoftext|>", "<|im_start|>"], progress=False)
    hf = _hf(ours.to_tokenizer_json())
    _assert_same_ids(hf, ours, texts[1:])


def _hf_trained(pre, text, vocab_size=800, nfc=False):
    tok = tokenizers.Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = tokenizers.normalizers.NFC()
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


def _split(pattern):
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), "isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


HF_PRE = {"gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
          "gpt4": lambda: _split(GPT4_HF), "qwen": lambda: _split(QWEN_HF), "qwen-nfc": lambda: _split(QWEN_HF),
          "llama3": lambda: _split(LLAMA3_HF),
          "smollm2": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),  # SmolLM2's
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])}
DIGITS = ["a1 22  333\n4444 x5y", "٣٤٥ ١٢ ² ½ Ⅻ ①", "  7", "7  ", " \n9", "'9's", "1.5e-3", "v2.0!! 3 ? 4"]


@pytest.mark.parametrize("style", list(HF_PRE))
def test_tokenizers_trained_by_hf_load_with_their_ids(style, texts, shakespeare, tmp_path):
    hf = _hf_trained(HF_PRE[style](), shakespeare[:300_000] + " ".join(DIGITS) * 20, nfc=style.endswith("nfc"))
    texts = texts + DIGITS
    hf.save(str(tmp_path / "tokenizer.json"))
    ours = load_tokenizer(tmp_path / "tokenizer.json")
    assert ours.special_tokens == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    _assert_same_ids(hf, ours, texts)
    assert ours.normalizer == ("NFC" if style.endswith("nfc") else None)
    ours.save(tmp_path / "again.model")  # HF's merge rule has no place in gptkit's format: saved as tokenizer.json
    again = load_tokenizer(tmp_path / "again.model")
    assert again.fingerprint() == ours.fingerprint()
    _assert_same_ids(_hf(again.to_tokenizer_json()), again, texts[1:4])


def test_the_merge_rule_is_part_of_the_fingerprint(shakespeare, tmp_path):
    """HF's rule and tiktoken's differ on the same vocabulary (merges ab, bc, a+bc: "abc" is [ab, c] in HF and
    [abc] by rank), so a tokenizer.json tokenizer never passes for a rank one."""
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
    hf_rule = Tokenizer(ranks, None, hf_merges=[(b"a", b"b"), (b"b", b"c"), (b"a", b"bc")])
    by_rank = Tokenizer(ranks, None)
    assert (hf_rule.encode("abc"), by_rank.encode("abc")) == ([256, 99], [258])
    assert hf_rule.fingerprint() != by_rank.fingerprint()
    assert _hf(hf_rule.to_tokenizer_json()).encode("abc").ids == [256, 99]


def test_char_tokenizer_exports_exactly(shakespeare):
    from gptkit.cli.export import tokenizer_files
    from gptkit.tokenizer.simple import CharTokenizer

    ours = CharTokenizer.train(shakespeare)
    hf = _hf(json.loads(tokenizer_files(ours, 64)["tokenizer.json"]))
    text = shakespeare[:20_000] + "\n\n  \r\n"[:3]
    assert hf.encode(text).ids == ours.encode(text)
    assert hf.decode(ours.encode(text)) == text
    with pytest.raises(Exception, match="Missing .UNK. token"):  # an unknown character is an error in both
        hf.encode("é")
    with pytest.raises(ValueError, match="not in this char tokenizer's vocabulary"):
        ours.encode("é")


def test_word_tokenizer_is_refused(verdict):
    from gptkit.cli.export import tokenizer_files
    from gptkit.tokenizer.simple import WordTokenizer

    with pytest.raises(ValueError, match="a word tokenizer has no exact HF equivalent"):
        tokenizer_files(WordTokenizer.train(verdict), 64)


def _unigram():
    tok = tokenizers.Tokenizer(models.Unigram([("a", -1.0), ("b", -2.0)]))
    return json.loads(tok.to_str())


def _edit(hf, **changes):
    doc = json.loads(hf.to_str())
    for key, value in changes.items():
        *path, last = key.split("__")
        target = doc
        for p in path:
            target = target[p]
        target[last] = value
    return doc


REFUSED = {  # kind: (tokenizer.json, the line's words)
    "unigram": (lambda hf: _unigram(), "model type 'Unigram'"),
    "byte-fallback": (lambda hf: _edit(hf, model__byte_fallback=True), "byte_fallback"),
    "normalizer": (lambda hf: _edit(hf, normalizer={"type": "NFKC"}), "normalizer 'NFKC'"),
    "prefix-space": (lambda hf: _edit(hf, pre_tokenizer__add_prefix_space=True), "add_prefix_space=True"),
    "digits": (lambda hf: _edit(hf, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False}, hf_pre_bytelevel()]}), "is not Split"),
    "lstrip": (lambda hf: _edit(hf, added_tokens=[{**json.loads(hf.to_str())["added_tokens"][0], "lstrip": True}]),
               "strips whitespace"),
    "decoder": (lambda hf: _edit(hf, decoder={"type": "Fuse"}), "decoder 'Fuse'"),
}


def hf_pre_bytelevel():
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_unsupported_tokenizer_json_is_refused_in_one_line(kind, tmp_path, verdict):
    hf = _hf_trained(HF_PRE["gpt2"](), verdict, vocab_size=300)
    make, words = REFUSED[kind]
    (tmp_path / "tokenizer.json").write_text(json.dumps(make(hf)))
    with pytest.raises(ValueError, match=words) as e:
        load_tokenizer(tmp_path / "tokenizer.json")
    assert "\n" not in str(e.value) and "gptkit reads byte-level BPE tokenizer.json files only" in str(e.value)


def test_not_json_and_not_a_tokenizer(tmp_path):
    (tmp_path / "a.json").write_text("{oops")
    with pytest.raises(ValueError, match="not a tokenizer.json .not valid JSON"):
        load_tokenizer(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tokenizer.json .no 'model'"):
        load_tokenizer(tmp_path / "b.json")


def test_docstring_examples():
    assert interval_plus(r"\p{N}{1,3}+", "(?>{})") == r"(?>\p{N}{1,3})"
    assert interval_plus(r"a[x\]]{2}+|(ab){1,}+|\d{3}+", "(?:{})+") == r"a(?:[x\]]{2})+|(?:(ab){1,})+|(?:\d{3})+"
    ranks = {b"a": 0, b"b": 1, b"ab": 2, b"ba": 3, b"aba": 4}
    assert all_pair_merges(ranks) == [(b"a", b"b"), (b"b", b"a"), (b"a", b"ba"), (b"ab", b"a")]
    merges = {(1, 2): (0, 5), (5, 3): (1, 6), (2, 3): (2, 7)}
    assert encode_by_merges([1, 2, 3], merges) == [6] and encode_by_merges([2, 3, 1, 2], merges) == [7, 5]
    assert byte_chars(b" hi!") == "Ġhi!"
