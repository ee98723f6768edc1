"""Speculative decoding (gptkit.torch.speculative): greedy ids equal the target's own (gptkit.torch.generate, learned
and rotary positions, past the context, with a poor draft and a perfect one), the acceptance rule turns draws from q
into
draws from p, sampled tokens follow the target's distribution (a chi-square test over many seeds), bad input."""

import itertools
import json
import math

import pytest
import torch
from tests.torch.test_generate import _model

from gptkit.config import GPTConfig
from gptkit.torch.generate import generate
from gptkit.torch.model import GPT
from gptkit.torch.speculative import accept, distribution, speculative_generate


def test_docstring_examples():
    assert distribution(torch.tensor([0.0, 0.0, 1.0]), 0, None, None).tolist() == [0.0, 0.0, 1.0]
    assert distribution(torch.tensor([0.0, 0.0]), 1.0, None, None).tolist() == [0.5, 0.5]
    hot = torch.eye(5)
    assert accept(hot[[3, 1, 4]], hot[[3, 2]], [3, 2], torch.Generator().manual_seed(0)) == (1, 1)


def _random_draft(vocab_size=20, block_size=16, seed=1):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=16)).eval()


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_greedy_equals_the_targets_own_greedy_ids(pos):
    target, poor = _model(pos), _random_draft()
    for prompt in ([1, 2, 3], [4], list(range(1, 19))):  # the last is longer than block_size 16
        want = generate(target, prompt, 40, temperature=0)  # 40 tokens: the window slides twice
        for draft, k in ((poor, 1), (poor, 4), (target, 4), (target, 30)):  # k 30: rounds capped by the room left
            got, stats = speculative_generate(target, draft, prompt, 40, k=k, temperature=0)
            assert got == want, (prompt, k)
            if draft is target:  # a perfect draft: every proposal kept, k + 1 tokens per target forward
                assert stats.acceptance_rate == 1.0 and stats.target_forwards < 40 / 2
    assert speculative_generate(target, poor, [1, 2], 40, temperature=0)[1].acceptance_rate < 0.5
    stop = want[6]
    assert speculative_generate(target, poor, prompt, 40, temperature=0, stop_token=stop)[0] == want[: want.index(stop)]
    assert speculative_generate(target, poor, prompt, 0)[0] == []


def _chi2_bound(df: int) -> float:
    """Pearson's X^2 over df + 1 cells is chi-square(df) distributed under the null: mean df, sd sqrt(2 df). The
    seeds are fixed, so each test is deterministic; the bound says a correct sampler lands above it for about 1 seed
    set in 10^4 (the chi-square(20) tail at its mean + 5 sd is 1.3e-4), while the wrong distributions it must catch
    land far above (asserted next to it)."""
    return df + 5 * math.sqrt(2 * df)


def _chi2(counts: dict, probs: dict, n: int) -> tuple[float, int]:
    """(X^2, df) of counts against n * probs, the cells expecting fewer than 5 pooled into one (Cochran's rule)."""
    big = [c for c in probs if n * probs[c] >= 5]
    cells = [([c], probs[c]) for c in big] + [([c for c in probs if c not in big], sum(probs[c] for c in probs
                                                                                      if c not in big))]
    x2 = sum((sum(counts.get(c, 0) for c in group) - n * p) ** 2 / (n * p) for group, p in cells if p > 0)
    return x2, len(cells) - 1


def test_accept_turns_draws_from_q_into_draws_from_p():
    """The first token of a round, 20,000 times: a draft drawn from q, then accept's verdict (the draft, or a draw
    from the residual): its frequencies are p's, though q puts most of its mass where p puts little."""
    p = torch.tensor([[0.5, 0.25, 0.15, 0.1, 0.0], [0.2] * 5])
    q = torch.tensor([[0.1, 0.1, 0.2, 0.3, 0.3]])
    g, n, counts = torch.Generator().manual_seed(0), 20_000, {}
    for _ in range(n):
        d = int(torch.multinomial(q[0], 1, generator=g))
        kept, nxt = accept(p, q, [d], g)
        first = d if kept else nxt
        counts[first] = counts.get(first, 0) + 1
    want = dict(enumerate(p[0].tolist()))
    x2, df = _chi2(counts, want, n)
    assert counts.get(4, 0) == 0 and x2 < _chi2_bound(df), (counts, x2)
    assert _chi2({c: n * w for c, w in enumerate(q[0].tolist())}, want, n)[0] > 100 * _chi2_bound(df)


def _peaked(seed: int, pos: str, n_layer: int) -> GPT:
    """A tiny random model over 3 tokens whose next-token distributions are far from uniform (weights x 12)."""
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=n_layer, n_head=1, n_embd=8, pos=pos)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(12) if p.dim() > 1 else p.add_(0.5 * torch.randn_like(p))
    return m


def _joint(m, prompt: list[int], n: int, temperature: float, top_k) -> dict:
    """The model's exact probability of each n-token continuation (uncached forwards, gptkit.torch.speculative's filter)."""
    out = {}
    with torch.no_grad():
        for seq in itertools.product(range(m.config.vocab_size), repeat=n):
            prob = 1.0
            for i in range(n):
                logits = m(torch.tensor([prompt + list(seq[:i])]))[0][0, -1]
                prob *= float(distribution(logits, temperature, top_k, None)[seq[i]])
            out[seq] = prob
    return out


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.8, 2)])
def test_sampled_tokens_follow_the_target_distribution(temperature, top_k):
    """1,200 seeds, 3 tokens each with k = 2 (two drafts and the bonus token, or a rejection and a second round):
    the frequencies of the 27 continuations against the target's exact probabilities (chi-square); the draft's own
    distribution, which a sampler that kept every draft would give, is far outside the bound."""
    target, draft, prompt, n = _peaked(0, "rope", 2), _peaked(1, "learned", 1), [1, 2], 1200
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny forwards: a second thread only adds hand-offs
    try:
        counts, proposed, accepted = {}, 0, 0
        for seed in range(n):
            ids, stats = speculative_generate(target, draft, prompt, 3, k=2, temperature=temperature, top_k=top_k,
                                              seed=seed)
            counts[tuple(ids)] = counts.get(tuple(ids), 0) + 1
            proposed, accepted = proposed + stats.proposed, accepted + stats.accepted
    finally:
        torch.set_num_threads(threads)
    p, q = _joint(target, prompt, 3, temperature, top_k), _joint(draft, prompt, 3, temperature, top_k)
    x2, df = _chi2(counts, p, n)
    assert all(counts.get(c, 0) == 0 for c in p if p[c] == 0)  # top-k's excluded tokens never come out
    assert x2 < _chi2_bound(df), (x2, df)
    assert _chi2({c: n * w for c, w in q.items()}, p, n)[0] > 10 * _chi2_bound(df)
    assert 0.2 < accepted / proposed < 0.95  # both paths, kept and rejected drafts, were taken often


def test_bad_input_says_how_to_fix_it():
    target = _model()
    with pytest.raises(ValueError, match="vocab sizes differ"):
        speculative_generate(target, _random_draft(vocab_size=21), [1], 3)
    with pytest.raises(ValueError, match="k .* must be an int >= 1"):
        speculative_generate(target, target, [1], 3, k=0)
    with pytest.raises(ValueError, match="training mode"):
        speculative_generate(target, _random_draft().train(), [1], 3)
    with pytest.raises(ValueError, match="top_p"):
        speculative_generate(target, target, [1], 3, top_p=2.0)


def test_gptkit_sample_refuses_a_draft_of_another_tokenizer_of_the_same_size(tmp_path, shakespeare, capsys):
    """Two char runs of 65 tokens each, one trained on text where every 'e' is an 'é': the same vocabulary size,
    other ids for the same text. The draft would propose tokens that mean other characters to the target."""
    from gptkit.cli import main

    def char_run(name: str, text: str):
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
        assert main(["prepare", str(tmp_path / f"{name}.txt"), "-t", "char", "-o", str(tmp_path / f"{name}-data"),
                     "-q"]) == 0
        assert main(["train", f"--data={tmp_path / f'{name}-data'}", "--n_layer=1", "--n_head=2", "--n_embd=16",
                     "--block_size=16", "--batch_size=2", "--max_iters=1", "--eval_interval=1", "--eval_iters=1",
                     "--sample_tokens=0", "--progress=false", "--peak_flops=1e12", f"--out_dir={tmp_path / name}"]) == 0
        return tmp_path / name

    text = shakespeare[:30_000]
    assert "é" not in text
    target, other, same = char_run("target", text), char_run("other", text.replace("e", "é")), char_run("same", text)
    sizes = {json.loads((run / "config.json").read_text())["model"]["vocab_size"] for run in (target, other)}
    assert len(sizes) == 1  # what the vocab-size check alone compared
    capsys.readouterr()
    argv = ["sample", str(target), "--max-new-tokens", "5", "--temperature", "0", "--draft"]
    assert main([*argv, str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gptkit: error: --draft {other} has another tokenizer than {target}: char (fingerprint ")
    assert err.count("\n") == 1 and "train it on data prepared with the target's tokenizer" in err
    assert main([*argv, str(same)]) == 0  # another run on the same tokenizer drafts
    assert "draft tokens accepted" in capsys.readouterr().err
