"""Char-level (nanoGPT shakespeare_char) and word-level (Raschka's SimpleTokenizerV2) tokenizers."""

import pytest

from gptkit import CharTokenizer, WordTokenizer, load_tokenizer


def test_char_shakespeare_golden(shakespeare):
    # "Let's build GPT" lecture: 65 characters, encode("hii there") -> [46, 47, 47, 1, 58, 46, 43, 56, 43]
    tok = CharTokenizer.train(shakespeare)
    assert tok.vocab_size == 65
    assert tok.chars == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]
    assert tok.decode(tok.encode(shakespeare[:5000])) == shakespeare[:5000]
    assert tok.eot_token is None


def test_char_docstring_example():
    assert CharTokenizer("\n !ab").encode("ab!") == [3, 4, 2]


def test_char_unknown_character():
    with pytest.raises(ValueError, match=r"character 'z' at position 2 is not in"):
        CharTokenizer("ab").encode("abz")


@pytest.mark.parametrize("bad", [2, -1, 99])
def test_char_decode_out_of_range(bad):
    with pytest.raises(ValueError, match=f"token id {bad} is not in this vocabulary"):
        CharTokenizer("ab").decode([0, bad])


def test_char_empty():
    with pytest.raises(ValueError, match="at least one character"):
        CharTokenizer.train("")


def test_word_raschka_goldens(verdict):
    # "Build a Large Language Model (From Scratch)", ch. 2: 1,130 words + 2 specials; SimpleTokenizerV1/V2 outputs
    tok = WordTokenizer.train(verdict)
    assert tok.vocab_size == 1132
    text = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    ids = tok.encode(text)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert tok.decode(ids) == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    text2 = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
    ids2 = tok.encode(text2)
    assert ids2 == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tok.decode(ids2) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."
    assert tok.eot_token == 1130 and tok.special_tokens == {"<|endoftext|>": 1130, "<|unk|>": 1131}


def test_word_split_example():
    assert WordTokenizer.split("Hello, world. Is this-- a test?") == [
        "Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]


@pytest.mark.parametrize("make", [lambda v: CharTokenizer.train(v), lambda v: WordTokenizer.train(v)])
def test_save_load_identity(tmp_path, verdict, make):
    tok = make(verdict)
    tok.save(tmp_path / "t.model")
    back = load_tokenizer(tmp_path / "t.model")
    assert type(back) is type(tok) and back.encode(verdict) == tok.encode(verdict)
    assert back.vocab_size == tok.vocab_size


def test_corrupt_simple_files_name_line(tmp_path):
    (tmp_path / "c.model").write_text("gptkit tokenizer v1\ntype char\nchars 5\n")
    with pytest.raises(ValueError, match=r"c.model:3: 'chars' must be a non-empty JSON string"):
        load_tokenizer(tmp_path / "c.model")
    (tmp_path / "w.model").write_text('gptkit tokenizer v1\ntype word\nwords 2\n"a"\nb\n')
    with pytest.raises(ValueError, match=r"w.model:5: expected a JSON string"):
        load_tokenizer(tmp_path / "w.model")


def test_streamed_words_are_spaced_as_decode_spaces_them():
    tok = WordTokenizer.train("Hello, world. Is this-- a test?")
    ids = tok.encode("Hello, world. Is this a test?")
    pieces = list(tok.decode_stream(ids))
    assert pieces[:3] == ["Hello", ",", " world"]  # the docstring example
    assert "".join(pieces) == tok.decode(ids) == "Hello, world. Is this a test?"
    assert "".join(tok.decode_stream(ids + [tok.eot_token] + ids)) == tok.decode(ids)  # stops at <|endoftext|>
    char = CharTokenizer.train("ab c")
    assert "".join(char.decode_stream(char.encode("a b c"))) == "a b c"
