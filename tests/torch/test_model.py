"""The torch models: shapes, causality, SDPA == explicit attention, KV cache == no cache, init, counts."""

import math

import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.torch.model import GPT, Bigram, CausalAttention, _explicit_attention, build_model

TINY = GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32)


def _model(cfg=TINY, attention="sdpa", seed=0):
    torch.manual_seed(seed)
    return GPT(cfg, attention=attention).eval()


def test_shapes_and_loss():
    m = _model()
    idx = torch.randint(0, 67, (3, 16))
    logits, loss = m(idx)
    assert logits.shape == (3, 16, 67) and loss is None
    logits, loss = m(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)


def test_gpt2_param_count():
    # 124,439,808: GPT-2 small with tied weights (HF GPT2LMHeadModel("gpt2").num_parameters()).
    with torch.device("meta"):
        m = GPT(GPTConfig.from_preset("gpt2"))
    assert m.num_params() == 124_439_808
    assert m.num_params(non_embedding=True) == 124_439_808 - 1024 * 768


def test_tied_weights():
    m = _model()
    assert m.lm_head.weight is m.wte.weight
    untied = _model(GPTConfig(**{**TINY.__dict__, "tie_weights": False}))
    assert untied.num_params() == m.num_params() + 67 * 32


def test_causality():
    m = _model()
    idx = torch.randint(0, 67, (1, 16))
    changed = idx.clone()
    changed[0, 9] = (idx[0, 9] + 1) % 67
    a, b = m(idx)[0], m(changed)[0]
    assert torch.equal(a[:, :9], b[:, :9])  # positions before t see nothing of t
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_sdpa_equals_explicit_attention():
    sdpa, explicit = _model(attention="sdpa"), _model(attention="explicit")
    idx = torch.randint(0, 67, (2, 16))
    torch.testing.assert_close(sdpa(idx)[0], explicit(idx)[0], atol=1e-5, rtol=1e-5)


def test_causal_attention_function_equals_sdpa_and_the_lectures_path():
    """CausalAttention (the explicit path's written-out backward, used for a whole sequence without dropout): SDPA's
    output and q/k/v gradients in fp32, the lecture's _explicit_attention's output, and gradcheck in float64."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 16, 8, requires_grad=True) for _ in range(3))
    grad = torch.randn(3, 4, 16, 8)
    outs = []
    for f in (CausalAttention.apply, lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                                   is_causal=True)):
        y = f(q, k, v)
        y.backward(grad)
        outs.append([y] + [t.grad.clone() for t in (q, k, v)])
        q.grad = k.grad = v.grad = None
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[0][0], _explicit_attention(q, k, v, None, 0.0), atol=1e-6, rtol=1e-6)
    x64 = [torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(CausalAttention.apply, x64)


def assert_cache_equals_no_cache(m) -> None:
    """Logits fed through the KV cache in pieces (5, 1, 5, then one at a time) equal one uncached pass."""
    idx = torch.randint(0, m.config.vocab_size, (2, 16))
    full = m(idx)[0]
    cache = m.new_cache(2)
    parts = [m(idx[:, :5], cache=cache)[0], m(idx[:, 5:6], cache=cache)[0], m(idx[:, 6:11], cache=cache)[0]]
    parts += [m(idx[:, t : t + 1], cache=cache)[0] for t in range(11, 16)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    # Rows at different positions (row 1 three tokens ahead, filled through a fill view of its row): each row's
    # logits still equal its uncached ones, and logits_at picks one position per row.
    cache = m.new_cache(2)
    m(idx[1:, :3], cache=cache.fill(torch.tensor([1])))
    cache.pos[1] = 3  # a fill view leaves the row's position to the caller (the engine sets each row's length)
    step = m(torch.stack([idx[0, :4], idx[1, 3:7]]), cache=cache)[0]
    torch.testing.assert_close(step, torch.stack([full[0, :4], full[1, 3:7]]), atol=1e-5, rtol=1e-5)
    last = m(idx[:, :6], logits_at=torch.tensor([2, 5]))[0]  # (2, 1, V)
    torch.testing.assert_close(last[:, 0], torch.stack([full[0, 2], full[1, 5]]), atol=1e-5, rtol=1e-5)
    # A right-padded prefill through a fill view: rows 0 and 2 of three, row 2 holding 4 real tokens and 3 of
    # padding; row 1 stays untouched, and the next tokens (row 2's from position 4) see only the real ones.
    cache, ids = m.new_cache(3), idx[:, :7].clone()
    ids[1, 4:] = 0
    first = m(ids, cache=cache.fill(torch.tensor([0, 2])), logits_at=torch.tensor([6, 3]))[0][:, 0]
    torch.testing.assert_close(first, torch.stack([full[0, 6], full[1, 3]]), atol=1e-5, rtol=1e-5)
    assert all(not k[1].any() for k in cache.k) and cache.pos.tolist() == [0, 0, 0]  # pos is the caller's to set
    cache.pos[:] = torch.tensor([7, 0, 4])
    step = m(torch.stack([idx[0, 7:9], idx[0, :2], idx[1, 4:6]]), cache=cache)[0]
    torch.testing.assert_close(step[[0, 2]], torch.stack([full[0, 7:9], full[1, 4:6]]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_kv_cache_equals_no_cache(attention):
    assert_cache_equals_no_cache(_model(attention=attention))


def test_init_loss_near_ln_vocab():
    # At GPT-2 init the logits are near zero, so the loss starts at about ln(vocab) (the lecture's check).
    m = _model(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    idx = torch.randint(0, 65, (8, 64))
    loss = m(idx, torch.randint(0, 65, (8, 64)))[1].item()
    assert abs(loss - math.log(65)) < 0.05


def test_init_table():
    m = _model(GPTConfig(vocab_size=67, block_size=16, n_layer=8, n_head=2, n_embd=256))
    torch.testing.assert_close(m.h[0].mlp.c_fc.weight.std().item(), 0.02, atol=1e-3, rtol=0)
    torch.testing.assert_close(m.h[0].attn.c_proj.weight.std().item(), 0.02 / math.sqrt(16), atol=5e-4, rtol=0)
    assert m.h[0].attn.c_attn.bias.abs().max() == 0
    assert torch.equal(m.h[0].ln_1.weight, torch.ones(256))


def test_padded_vocab_never_reaches_logits():
    m = _model(GPTConfig(**{**TINY.__dict__, "pad_vocab_to": 64}))
    assert m.wte.weight.shape[0] == 128
    logits, loss = m(torch.randint(0, 67, (1, 4)), torch.randint(0, 67, (1, 4)))
    assert logits.shape[-1] == 67


def test_ignore_index():
    m = _model()
    idx = torch.randint(0, 67, (1, 8))
    targets = idx.clone()
    targets[0, 4:] = -1
    torch.testing.assert_close(m(idx, targets)[1], m(idx[:, :4], targets[:, :4])[1])


def test_gelu_choice_matters():
    a = _model(GPTConfig(**{**TINY.__dict__, "gelu": "tanh"}))
    b = _model(GPTConfig(**{**TINY.__dict__, "gelu": "exact"}))
    idx = torch.randint(0, 67, (1, 8))
    assert not torch.equal(a(idx)[0], b(idx)[0])


def test_bigram():
    cfg = GPTConfig.from_preset("bigram")
    m = build_model(cfg)
    assert isinstance(m, Bigram) and m.new_cache(1).k == []  # positions only: nothing to cache
    idx = torch.randint(0, 65, (2, 8))
    logits, loss = m(idx, idx)
    assert logits.shape == (2, 8, 65)
    torch.testing.assert_close(logits[0, 3], m.wte.weight[idx[0, 3], :65])


def test_wrong_arch():
    with pytest.raises(ValueError, match="arch"):
        GPT(GPTConfig.from_preset("bigram"))
    with pytest.raises(ValueError, match="attention"):
        GPT(TINY, attention="flash")


def final_loss_on_tiny_text(config: GPTConfig, steps: int = 150) -> float:
    """Train on one short sequence with AdamW; a model that can learn memorises it (loss near zero)."""
    torch.manual_seed(0)
    m = GPT(config)
    text = "the quick brown fox jumps over"
    ids = torch.tensor([[ord(c) - 96 if c != " " else 0 for c in text]])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = m(ids[:, :-1], ids[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def test_overfits_tiny_text():
    assert final_loss_on_tiny_text(GPTConfig(vocab_size=27, block_size=32, n_layer=2, n_head=2, n_embd=64,
                                             gelu="exact")) < 0.05


def test_cache_mask_docstring_example():
    from gptkit.torch.model import KVCache

    cache = KVCache(GPTConfig(vocab_size=5, block_size=3, n_layer=1, n_head=1, n_embd=4), 1)
    k = torch.ones(1, 1, 2, 4)
    _, _, mask = cache.write(0, k, k, torch.tensor([[1, 2]]))
    assert mask.tolist() == [[[[True, True, False], [True, True, True]]]]
