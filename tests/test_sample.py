"""Sampling: greedy, seeded determinism, top-k / top-p masks, stop tokens, generate == uncached argmax."""

import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.model import GPT
from gptkit.sample import filter_logits, generate, sample_next, stream_text
from gptkit.simple_tokenizers import CharTokenizer

NEG = float("-inf")


def test_filter_top_k_docstring_example():
    out = filter_logits(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), top_k=2)
    assert out.tolist() == [[3.0, 2.0, NEG, NEG]]


def test_filter_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # nucleus 0.7: 0.5 alone is short of 0.7, 0.5 + 0.3 reaches it -> two tokens kept
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]  # always one
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [[False, True, False, True]]


def test_temperature_zero_is_argmax():
    logits = torch.randn(4, 10)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))


def test_top_k_one_is_argmax():
    logits = torch.randn(4, 10)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, top_k=1, generator=g), logits.argmax(-1))


def test_samples_only_allowed_tokens():
    logits = torch.zeros(1, 10)
    logits[0, 3] = logits[0, 7] = 5.0
    g = torch.Generator().manual_seed(0)
    seen = {int(sample_next(logits, top_k=2, generator=g)) for _ in range(200)}
    assert seen == {3, 7}


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
])
def test_bad_sampling_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_next(torch.zeros(1, 3), **kwargs)


def _model(block_size=16):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, block_size=block_size, n_layer=2, n_head=2, n_embd=32)).eval()


def _run(model, idx, n, seed=None, **kw):
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.stack(list(generate(model, idx, n, generator=g, **kw)), dim=1)


def test_seeded_sampling_is_deterministic_and_seed_dependent():
    m, idx = _model(), torch.tensor([[1, 2, 3]])
    a, b, c = _run(m, idx, 30, seed=5), _run(m, idx, 30, seed=5), _run(m, idx, 30, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generate_matches_stepwise_argmax(use_cache):
    # Past block_size the cached and uncached paths both slide a block_size window (nanoGPT's crop).
    m, idx = _model(block_size=8), torch.tensor([[1, 2, 3]])
    got = _run(m, idx, 12, temperature=0, use_cache=use_cache)
    seq = idx
    for _ in range(12):
        nxt = m(seq[:, -8:])[0][:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(got, seq[:, 3:])


def test_cache_and_no_cache_sample_the_same():
    m, idx = _model(block_size=8), torch.tensor([[4, 5], [6, 7]])
    assert torch.equal(_run(m, idx, 15, seed=1, use_cache=True), _run(m, idx, 15, seed=1, use_cache=False))


def test_stop_token():
    m, idx = _model(), torch.tensor([[1, 2]])
    greedy = _run(m, idx, 10, temperature=0)[0].tolist()
    stop = greedy[3]
    got = _run(m, idx, 10, temperature=0, stop_token=stop)[0].tolist()
    assert got == greedy[: greedy.index(stop) + 1]


def test_stream_text_pieces_join_to_decode():
    tok = CharTokenizer(sorted(set("hello world, é!")))
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=16)).eval()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    pieces = list(stream_text(m, tok, tok.encode("he"), 20, generator=g1))
    ids = [int(t) for t in generate(m, torch.tensor([tok.encode("he")]), 20, generator=g2)]
    assert "".join(pieces) == tok.decode(ids)
