"""gptkit.tokenizer.load, the one module above every tokenizer: a published encoding or a saved file by spec, and the
tokenizer a data dir's meta.json or a run's config.json records."""

import pytest

from gptkit import CharTokenizer, Tokenizer, WordTokenizer
from gptkit.tokenizer.formats import TOKENIZER_FILE
from gptkit.tokenizer.load import get_tokenizer, load_tokenizer, tokenizer_from_record


@pytest.mark.parametrize("name, vocab_size, eot", [("gpt2", 50257, 50256), ("r50k_base", 50257, 50256),
                                                   ("cl100k_base", 100277, 100257)])  # tiktoken's n_vocab, eot_token
def test_get_tokenizer_by_name(name, vocab_size, eot):
    tok = get_tokenizer(name)
    assert isinstance(tok, Tokenizer) and (tok.vocab_size, tok.eot_token) == (vocab_size, eot)


@pytest.mark.parametrize("make", [lambda: CharTokenizer.train("hello"), lambda: WordTokenizer.train("Hello, world."),
                                  lambda: Tokenizer.train("hello hello world", 260, progress=False)])
def test_get_tokenizer_and_load_tokenizer_take_any_saved_kind(tmp_path, make):
    tok = make()
    tok.save(tmp_path / TOKENIZER_FILE)
    for back in (get_tokenizer(str(tmp_path / TOKENIZER_FILE)), load_tokenizer(tmp_path / TOKENIZER_FILE)):
        assert type(back) is type(tok) and back.fingerprint() == tok.fingerprint()


def test_get_tokenizer_unknown_spec_says_what_is_accepted():
    msg = "unknown tokenizer 'nope': use one of gpt2, r50k_base, cl100k_base or the path of a saved tokenizer"
    with pytest.raises(ValueError, match=msg):
        get_tokenizer("nope")


def test_tokenizer_from_record_reads_the_file_beside_the_record_else_the_spec(tmp_path):
    CharTokenizer.train("hi there").save(tmp_path / TOKENIZER_FILE)
    from_file = tokenizer_from_record({"spec": "char", "file": TOKENIZER_FILE, "vocab_size": 6}, tmp_path)
    assert isinstance(from_file, CharTokenizer) and from_file.chars == " ehirt"
    from_spec = tokenizer_from_record({"spec": "gpt2", "file": None}, tmp_path)
    assert from_spec.encode("Hello world") == [15496, 995]  # tiktoken r50k_base
