"""The BPE algorithm: helpers' docstring examples, the two trainers agreeing, and the rank encoder."""

import random

import pytest

from gptkit.tokenizer import bpe


def test_get_stats_example():
    assert bpe.get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}


def test_merge_example():
    assert bpe.merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]


def test_best_pair_tie_break_example():
    assert bpe._best_pair({(5, 1): 2, (3, 9): 2, (1, 1): 1}) == (3, 9)


def test_merge_word_example():
    from collections import defaultdict

    delta, where = defaultdict(int), defaultdict(set)
    assert bpe._merge_word([1, 2, 1, 2], (1, 2), 9, 1, 0, delta, where) == [9, 9]
    assert {p: d for p, d in delta.items() if d} == {(2, 1): -1, (9, 9): 1}


@pytest.mark.parametrize("train", [bpe.train_naive, bpe.train_fast])
def test_wikipedia_example(train):
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aaabdaaabac, 3 merges -> XdXac
    # with Z=aa (256), Y=ab (257), X=ZY (258); minbpe's test gives the same ids [258, 100, 258, 97, 99]
    merges = train([(b"aaabdaaabac", 1)], 259)
    assert merges == [(97, 97), (97, 98), (256, 257)]
    vocab = bpe.vocab_from_merges(merges)
    ranks = {t: i for i, t in enumerate(vocab)}
    assert [bpe.encode_piece(p, ranks) for p in [b"aaabdaaabac"]] == [[258, 100, 258, 97, 99]]


def _corpus_words(text, pattern):
    from collections import Counter

    import regex

    chunks = regex.findall(pattern, text) if pattern else [text]
    return [(c.encode(), f) for c, f in Counter(chunks).items()]


def _ties_corpus():
    rng = random.Random(0)  # a tiny alphabet makes many equal counts, exercising the tie-break
    return " ".join("".join(rng.choice("abc") for _ in range(rng.randint(1, 7))) for _ in range(400))


@pytest.mark.parametrize("corpus", ["verdict", "taylor", "ties", "nosplit"])
@pytest.mark.parametrize("vocab_size", [260, 300, 420])
def test_fast_equals_naive(corpus, vocab_size, verdict, taylorswift):
    from gptkit.tokenizer.encodings import GPT2_PATTERN, GPT4_PATTERN

    words = {
        "verdict": lambda: _corpus_words(verdict, GPT4_PATTERN),
        "taylor": lambda: _corpus_words(taylorswift[:40_000], GPT2_PATTERN),
        "ties": lambda: _corpus_words(_ties_corpus(), GPT4_PATTERN),
        "nosplit": lambda: _corpus_words(verdict[:3000], None),
    }[corpus]()
    assert bpe.train_fast(words, vocab_size) == bpe.train_naive(words, vocab_size)


def test_duplicate_bytes_merge_into_existing_token():
    # "ab"+"c" makes "abc" in one word, "a"+"bc" would make the same bytes in another: one token only.
    words = [(b"ab", 5), (b"bc", 4), (b"abc", 1), (b"xabc", 1)]
    for train in (bpe.train_naive, bpe.train_fast):
        vocab = bpe.vocab_from_merges(train(words, 270))
        assert len(set(vocab)) == len(vocab)


def test_trainers_stop_when_no_pairs_left():
    assert bpe.train_fast([(b"abab", 3)], 1000) == bpe.train_naive([(b"abab", 3)], 1000) == [(97, 98), (256, 256)]


def test_encode_piece_example():
    assert bpe.encode_piece(b"abab", {b"a": 0, b"b": 1, b"ab": 2}) == [2, 2]


def test_long_piece_encoder_matches_short(verdict):
    from gptkit.tokenizer.encodings import GPT4_PATTERN

    vocab = bpe.vocab_from_merges(bpe.train_fast(_corpus_words(verdict, GPT4_PATTERN), 600))
    ranks = {t: i for i, t in enumerate(vocab)}
    rng = random.Random(1)
    data = verdict.encode()
    for _ in range(200):
        i = rng.randrange(len(data) - 300)
        piece = data[i : i + rng.randint(2, 300)]
        assert bpe._encode_long(piece, ranks) == bpe._encode_short(piece, ranks)
    assert bpe._encode_long(b"aaaaaaa", {b"a": 0, b"aa": 1}) == [1, 1, 1, 0]


def test_recover_merges_round_trip(verdict):
    from gptkit.tokenizer.encodings import GPT4_PATTERN

    merges = bpe.train_fast(_corpus_words(verdict, GPT4_PATTERN), 500)
    ranks = {t: i for i, t in enumerate(bpe.vocab_from_merges(merges))}
    assert bpe.recover_merges(ranks) == merges


def test_recover_merges_rejects_non_bpe_vocab():
    ranks = {bytes([i]): i for i in range(256)} | {b"abc": 256}
    with pytest.raises(ValueError, match="not the merge of two"):
        bpe.recover_merges(ranks)
