"""Training, tiktoken's special-token semantics, save/load, tiktoken interchange, and bad input (the file formats'
own errors: tests/tokenizer/test_formats.py)."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptkit import Tokenizer, load_tokenizer
from gptkit.files import iter_text_blocks
from gptkit.tokenizer.encodings import GPT2_PATTERN
from gptkit.tokenizer.parallel import count_chunks

SPECIALS = ["<|endoftext|>", "<|pad|>"]


@pytest.fixture(scope="module")
def trained(verdict):
    return Tokenizer.train(verdict, 512, "gpt4", SPECIALS, progress=False)


def _as_tiktoken(tok):
    import tiktoken

    return tiktoken.Encoding("t", pat_str=tok.pattern, mergeable_ranks=tok.mergeable_ranks, special_tokens=tok.special_tokens)


def test_train_layout(trained):
    assert trained.vocab_size == 512
    assert trained.special_tokens == {"<|endoftext|>": 510, "<|pad|>": 511} and trained.eot_token == 510
    assert len(trained.merges) == 510 - 256
    assert all(trained.token_bytes(i) == bytes([i]) for i in range(256))


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_round_trip(trained, text):
    assert trained.decode(trained.encode_ordinary(text)) == text


def test_matches_tiktoken_with_same_ranks(trained, shakespeare):
    assert trained.encode_ordinary(shakespeare[:200_000]) == _as_tiktoken(trained).encode_ordinary(shakespeare[:200_000])


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"allowed_special": "all"}, {"allowed_special": {"<|pad|>"}}, {"disallowed_special": ()},
     {"allowed_special": {"<|pad|>"}, "disallowed_special": ()}],
)
def test_special_token_semantics_match_tiktoken(trained, kwargs):
    ref = _as_tiktoken(trained)
    for text in ["plain text", "a <|endoftext|> b", "x<|pad|>y", "<|pad|><|endoftext|>"]:
        try:
            expected = ref.encode(text, **kwargs)
        except ValueError:
            with pytest.raises(ValueError, match="disallowed special token"):
                trained.encode(text, **kwargs)
            continue
        assert trained.encode(text, **kwargs) == expected


def test_disallowed_error_names_token_and_fix(trained):
    with pytest.raises(ValueError, match=r"(?s)'<\|pad\|>'.*allowed_special") as e:
        trained.encode("hi <|pad|>")
    assert "disallowed_special=()" in str(e.value)


def test_unknown_allowed_special(trained):
    with pytest.raises(ValueError, match="not special tokens"):
        trained.encode("x", allowed_special={"<|nope|>"})


def test_special_text_is_cut_out_of_training():
    with pytest.warns(UserWarning, match="supports only 1 merges"):
        tok = Tokenizer.train("ab<|endoftext|>ab<|endoftext|>ab", 300, None, ["<|endoftext|>"], progress=False)
    assert not any(b"<|" in tok.token_bytes(i) for i in range(256, tok.vocab_size - 1))


def test_streamed_training_equals_whole_text(tmp_path, shakespeare):
    path = tmp_path / "s.txt"
    path.write_text(shakespeare[:300_000], encoding="utf-8")
    blocks = list(iter_text_blocks(path, block_bytes=10_000))
    assert len(blocks) > 20 and "".join(blocks) == shakespeare[:300_000]
    for pattern in ("gpt4", "gpt2"):
        whole = Tokenizer.train(shakespeare[:300_000], 600, pattern, progress=False)
        streamed = Tokenizer.train(iter(blocks), 600, pattern, progress=False)
        assert streamed.merges == whole.merges


def test_parallel_chunk_counting_equals_serial(taylorswift):
    docs = [taylorswift[i : i + 5000] for i in range(0, len(taylorswift), 5000)]
    assert count_chunks(docs, GPT2_PATTERN, [], num_workers=2) == count_chunks(docs, GPT2_PATTERN, [])


def test_naive_algorithm_through_api(verdict):
    fast = Tokenizer.train(verdict[:5000], 300, "gpt2", progress=False)
    naive = Tokenizer.train(verdict[:5000], 300, "gpt2", progress=False, algorithm="naive")
    assert fast.merges == naive.merges


def test_no_split_pattern(verdict):
    tok = Tokenizer.train(verdict[:4000], 320, None, progress=False)
    assert tok.pattern is None
    assert tok.decode(tok.encode(verdict[:4000])) == verdict[:4000]
    assert len(tok.encode(verdict[:4000])) < len(verdict[:4000].encode()) * 0.65  # 64 merges save about 40%


def test_encode_batch_with_processes(trained, verdict):
    docs = [verdict[i : i + 700] for i in range(0, 7000, 700)]
    assert trained.encode_batch(docs, num_workers=2) == [trained.encode(d) for d in docs]


def test_cache_stays_bounded(monkeypatch, trained, verdict):
    import gptkit.tokenizer.byte_level

    monkeypatch.setattr(gptkit.tokenizer.byte_level, "_CACHE_MAX", 50)
    trained._cache.clear()
    assert trained.decode(trained.encode_ordinary(verdict)) == verdict
    assert len(trained._cache) <= 50


# -- save / load / tiktoken interchange ------------------------------------------------------------


def test_save_load_identity(tmp_path, trained, verdict):
    trained.save(tmp_path / "tok.model")
    back = Tokenizer.load(tmp_path / "tok.model")
    assert back.merges == trained.merges and back.special_tokens == trained.special_tokens
    assert back.pattern == trained.pattern and back.encode_ordinary(verdict) == trained.encode_ordinary(verdict)
    assert (tmp_path / "tok.model").read_text().startswith("gptkit tokenizer v1\ntype bpe\n")
    view = (tmp_path / "tok.vocab").read_text(encoding="utf-8").splitlines()
    a, b = trained.merges[0]
    assert view[256] == f"[{chr(a)}][{chr(b)}] -> [{chr(a)}{chr(b)}] 256"
    assert view[-1] == "special [<|pad|>] 511"


def test_gpt2_save_load_identity(tmp_path, gpt2_tok, taylorswift):
    gpt2_tok.save(tmp_path / "gpt2.model")
    back = load_tokenizer(tmp_path / "gpt2.model")
    assert back.mergeable_ranks == gpt2_tok.mergeable_ranks and back.special_tokens == gpt2_tok.special_tokens
    assert back.encode_ordinary(taylorswift) == gpt2_tok.encode_ordinary(taylorswift)


def test_tiktoken_export_import(tmp_path, trained, shakespeare):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    trained.save_tiktoken(tmp_path / "t.tiktoken")
    enc = tiktoken.Encoding("x", pat_str=trained.pattern, mergeable_ranks=load_tiktoken_bpe(str(tmp_path / "t.tiktoken")),
                            special_tokens=trained.special_tokens)
    text = shakespeare[:100_000] + "<|endoftext|>"
    assert enc.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")
    back = Tokenizer.from_tiktoken(tmp_path / "t.tiktoken", "gpt4", trained.special_tokens)
    assert back.mergeable_ranks == trained.mergeable_ranks and back.merges == trained.merges


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", [], ["", ""]])
def test_empty_text(text):
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.train(text, 300, progress=False)


@pytest.mark.parametrize("size", [256, 200, 257.5, "300"])
def test_vocab_size_too_small_or_not_int(size):
    with pytest.raises(ValueError, match="vocab_size must be an integer above 256"):
        Tokenizer.train("some text", size, progress=False)


def test_vocab_size_specials_count():
    with pytest.raises(ValueError, match=r"256 \+ 2 special"):
        Tokenizer.train("some text", 258, special_tokens=SPECIALS, progress=False)


def test_vocab_larger_than_corpus_supports_warns():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        tok = Tokenizer.train("abcabc", 1000, progress=False)
    # "abcabc" is one chunk: ab, abc, abcabc, then nothing is left to merge
    assert len(w) == 1 and "supports only 3 merges" in str(w[0].message)
    assert tok.vocab_size == 259


@pytest.mark.parametrize("bad", [99999, -1, 512, "3", None, 1.5])
def test_decode_out_of_range(trained, bad):
    with pytest.raises(ValueError, match=f"token id {bad!r} is not in this vocabulary"):
        trained.decode([1, 2, bad])


def test_duplicate_special_tokens():
    with pytest.raises(ValueError, match="distinct"):
        Tokenizer.train("text", 300, special_tokens=["<|a|>", "<|a|>"], progress=False)


def test_special_colliding_with_learned_token(trained):
    with pytest.raises(ValueError, match="learned token"):
        Tokenizer(trained.mergeable_ranks, "gpt4", {"<|endoftext|>": 300})


def test_bad_pattern():
    with pytest.raises(ValueError, match="not a valid regex"):
        Tokenizer.train("text", 300, pattern="(unclosed", progress=False)


def test_non_str_document():
    with pytest.raises(ValueError, match="must be str, got bytes"):
        Tokenizer.train([b"bytes"], 300, progress=False)
