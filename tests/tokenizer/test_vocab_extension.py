"""Vocabulary extension (issue 24): adding the chat tokens to a trained tokenizer of every kind appends special ids
after the vocabulary and changes nothing else; the extended tokenizer saves, loads and fingerprints as itself."""

import pytest

from gptkit import CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer
from gptkit.tokenizer.chat import IM_END, IM_START

CHAT = [IM_START, IM_END]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def _kinds(shakespeare):
    return {"bpe": Tokenizer.train(shakespeare[:20_000], 300, special_tokens=["<|endoftext|>"]),
            "char": CharTokenizer.train(shakespeare), "word": WordTokenizer.train(shakespeare[:20_000])}


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_the_chat_tokens_take_the_next_ids_and_nothing_else_changes(shakespeare, tmp_path, kind):
    tok = _kinds(shakespeare)[kind]
    grown = tok.with_special_tokens(CHAT)
    n = tok.vocab_size
    assert grown.vocab_size == n + 2 and [grown.special_tokens[t] for t in CHAT] == [n, n + 1]
    assert {t: i for t, i in grown.special_tokens.items() if t not in CHAT} == tok.special_tokens
    assert grown.encode(TEXT) == tok.encode(TEXT)  # every old id as it was
    ids = grown.encode(IM_START + "user\n" + TEXT + IM_END, allowed_special="all")
    assert ids[0] == n and ids[-1] == n + 1 and ids[1:-1] == tok.encode("user\n" + TEXT)
    if kind == "word":  # SimpleTokenizerV2's rule: a special token in the text is always its own token
        assert grown.encode(IM_END) == [n + 1]
    else:
        with pytest.raises(ValueError, match="disallowed special token"):  # tiktoken's rule, as for <|endoftext|>
            grown.encode(IM_END)
    if kind != "word":  # the word tokenizer joins words with spaces: it never round-trips text exactly
        assert grown.decode(ids) == IM_START + "user\n" + TEXT + IM_END
    grown.save(tmp_path / "t.model")
    back = load_tokenizer(tmp_path / "t.model")
    assert back.special_tokens == grown.special_tokens and back.fingerprint() == grown.fingerprint()
    assert grown.fingerprint() != tok.fingerprint()
    assert grown.with_special_tokens(CHAT) is grown  # a tokenizer that has the tokens is left as it is


def test_gpt2_grows_to_50259(gpt2_tok):
    grown = gpt2_tok.with_special_tokens(CHAT)
    assert (grown.vocab_size, grown.special_tokens[IM_END]) == (50259, 50258)
    assert grown.encode("hello world") == gpt2_tok.encode("hello world") == [31373, 995]


def test_bad_special_tokens_and_files_are_refused(tmp_path):
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="non-empty strings"):
        tok.with_special_tokens([""])
    path = tmp_path / "t.model"
    path.write_text('gptkit tokenizer v1\ntype char\nchars "abc"\nspecials {"<|x|>": 7}\n')
    with pytest.raises(ValueError, match=r"t.model:4: 'specials' must map non-empty strings to the ids 3, 4"):
        load_tokenizer(path)
