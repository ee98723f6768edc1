"""The modern model options (GPTConfig.pos/norm/qk_norm/mlp/n_kv_head/logit_softcap/zero_init_proj), each alone and
all together: KV cache == uncached, causality, finite grads, a tiny model overfits, and the pieces' own math."""

import math

import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.torch.model import (GPT, CausalSelfAttention, QKNormRope, ReluSquared, ReluSquaredMLP, RMSNormFunction,
                                _head_major, apply_rope, rope_tables, rope_weights)

BASE = dict(vocab_size=67, block_size=16, n_layer=2, n_head=4, n_embd=32, bias=False, gelu="exact")
OPTIONS = {
    "rope": dict(pos="rope"),
    "rmsnorm": dict(norm="rmsnorm"),
    "qk_norm": dict(qk_norm=True),
    "relu2": dict(mlp="relu2"),
    "swiglu": dict(mlp="swiglu"),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "softcap": dict(logit_softcap=10.0),
    "zero_init_proj": dict(zero_init_proj=True),
    "all": dict(pos="rope", norm="rmsnorm", qk_norm=True, mlp="relu2", n_kv_head=2, logit_softcap=10.0,
                zero_init_proj=True, tie_weights=False),
    "llama": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_weights=False),
}


def model(name, attention="sdpa", seed=0):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**BASE, **OPTIONS[name]), attention).eval()
    with torch.no_grad():  # zero-initialized projections and unit norms would hide mistakes: perturb everything
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_kv_cache_equals_no_cache(name, attention):
    from tests.torch.test_model import assert_cache_equals_no_cache

    assert_cache_equals_no_cache(model(name, attention))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_causal_and_sdpa_equals_explicit(name):
    m, explicit = model(name), model(name, "explicit")
    idx = torch.randint(0, 67, (2, 16))
    changed = idx.clone()
    changed[:, 9] = (idx[:, 9] + 1) % 67
    a, b = m(idx)[0], m(changed)[0]
    assert torch.equal(a[:, :9], b[:, :9]) and not torch.allclose(a[:, 9:], b[:, 9:])
    torch.testing.assert_close(a, explicit(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_grads_are_finite_and_reach_every_parameter(name):
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, **OPTIONS[name]))  # the real init, zero projections included
    idx = torch.randint(0, 67, (2, 16))
    m(idx, idx)[1].backward()
    for k, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), k
    reached = [k for k, p in m.named_parameters() if p.grad.abs().sum() > 0]
    if OPTIONS[name].get("zero_init_proj"):  # with the blocks' outputs at zero, only what feeds them is silent
        assert any("c_proj" in k for k in reached)
    else:
        assert len(reached) == len(list(m.parameters()))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_overfits_tiny_text(name):
    """Every option alone and the combinations memorise one sentence (150 AdamW steps, ~1 s each on one core)."""
    from tests.torch.test_model import final_loss_on_tiny_text

    config = GPTConfig(**{**BASE, "vocab_size": 27, "block_size": 32, "n_embd": 64}, **OPTIONS[name])
    assert final_loss_on_tiny_text(config) < 0.05


def test_relu_squared_gradient_is_autograds_through_relu_then_square():
    """The hand-written backward gives autograd's numbers bit for bit (x2 is exact), zero where h <= 0, and passes
    gradcheck in float64."""
    h = torch.randn(4, 8, 64) * 2
    h[0, 0, :4] = torch.tensor([0.0, -0.0, -1e-30, 1e-30])  # relu's kink: gradient 0 at and below zero
    grad = torch.randn_like(h)
    a, b = h.clone().requires_grad_(), h.clone().requires_grad_()
    ReluSquared.apply(a).backward(grad)
    torch.nn.functional.relu(b).square().backward(grad)
    assert torch.equal(ReluSquared.apply(h), torch.nn.functional.relu(h).square()) and torch.equal(a.grad, b.grad)
    assert (a.grad[h <= 0] == 0).all() and (a.grad[h > 0] != 0).all()
    assert torch.autograd.gradcheck(ReluSquared.apply, (torch.randn(3, 5, dtype=torch.float64, requires_grad=True),))


def test_relu_squared_mlp_without_autograd_runs_in_place_to_the_same_output():
    """Without autograd (evaluation, sampling) the ReLU^2 MLP squares c_fc's output in place: the output of the
    autograd Function's path bit for bit, and the input x untouched."""
    torch.manual_seed(0)
    mlp = GPT(GPTConfig(**{**BASE, "n_embd": 64}, mlp="relu2")).h[0].mlp
    x = torch.randn(2, 8, 64)
    x0 = x.clone()
    with torch.no_grad():
        fast = mlp(x)
    assert torch.equal(x, x0)
    assert torch.equal(fast, mlp(x).detach())


@pytest.mark.parametrize("bias", [True, False])
def test_relu_squared_mlp_function_gives_the_layers_numbers_bit_for_bit(bias):
    """ReluSquaredMLP, the training path of a ReLU^2 MLP: the output and every gradient (input, both weights, both
    biases) equal those of the layers through ReluSquared bit for bit in fp32 (the factor 2 moved onto the smaller
    products is exact), the MLP's forward takes it in training only, and it passes gradcheck in float64."""
    torch.manual_seed(0)
    mlp = GPT(GPTConfig(**{**BASE, "n_embd": 64, "bias": bias}, mlp="relu2")).h[0].mlp
    for p in mlp.parameters():  # biases away from zero, so that their gradients are tested too
        torch.nn.init.normal_(p, std=0.1)
    x, grad = torch.randn(2, 8, 64, requires_grad=True), torch.randn(2, 8, 64)
    y = mlp(x)
    assert type(y.grad_fn).__name__ == "ReluSquaredMLPBackward"
    got = torch.autograd.grad(y, [x, *mlp.parameters()], grad)
    ref = mlp.c_proj(ReluSquared.apply(mlp.c_fc(x)))
    assert type(ref.grad_fn).__name__ != "ReluSquaredMLPBackward" and torch.equal(y, ref)
    for a, b in zip(got, torch.autograd.grad(ref, [x, *mlp.parameters()], grad), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(mlp(x), y)
    weights = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((6, 4), (6,), (4, 6), (4,))]
    args = (torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True), *weights)
    assert torch.autograd.gradcheck(ReluSquaredMLP.apply, args if bias else (args[0], args[1], None, args[3], None))


def test_relu_squared_mlp_under_autocast_keeps_the_layers():
    """Under autocast (bf16 training) the MLP runs the layers through ReluSquared, whose casts autocast makes: a bf16
    output equal to theirs, fp32 weight gradients."""
    torch.manual_seed(0)
    mlp = GPT(GPTConfig(**{**BASE, "n_embd": 64}, mlp="relu2")).h[0].mlp
    x = torch.randn(2, 8, 64, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        y = mlp(x)
        ref = mlp.c_proj(ReluSquared.apply(mlp.c_fc(x)))
    assert y.dtype == torch.bfloat16 and type(y.grad_fn).__name__ != "ReluSquaredMLPBackward" and torch.equal(y, ref)
    y.float().sum().backward()
    assert mlp.c_fc.weight.grad.dtype == torch.float32 and torch.isfinite(mlp.c_fc.weight.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_qk_norm_and_rope_in_one_function_equal_the_separate_steps(n_kv_head, dtype):
    """A whole sequence's QK-norm + rotary run as one QKNormRope (shared tables (T, hs)); the same positions as per-row
    tables (B, 1, T, hs), what a KV cache passes, take the separate steps (F.rms_norm, weight, apply_rope): the same
    outputs and gradients for every weight and the input, in fp32 (to rounding) and under bf16 autocast (to bf16's
    precision: the separate steps round to bf16 between the norm and the rotation)."""
    torch.manual_seed(0)
    config = GPTConfig(**{**BASE, "n_embd": 64}, pos="rope", norm="rmsnorm", qk_norm=True, n_kv_head=n_kv_head)
    att = CausalSelfAttention(config)
    with torch.no_grad():
        for p in att.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, grad = torch.randn(3, 16, 64), torch.randn(3, 16, 64)
    outs = []
    for positions in (torch.arange(16), torch.arange(16).expand(3, 16)):
        xx = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = att(xx, rope_tables(config, positions))
        y.float().backward(grad)
        outs.append([y.float(), xx.grad] + [p.grad.clone() for p in att.parameters()])
        att.zero_grad()
    for a, b in zip(*outs):
        if dtype == torch.float32:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        else:  # bf16 keeps 8 bits: each tensor to ~1% of its size
            assert (a - b).norm() <= 0.01 * b.norm()


def test_qk_norm_rope_backward_passes_gradcheck():
    """The written-out backward of QKNormRope against finite differences in float64: the input, both tables; and its
    outputs stored head-major, so that CausalAttention's (heads * B, T, hs) batch of each is a view, not a copy."""
    torch.manual_seed(0)
    B, T, heads, hs, nqk = 2, 5, 5, 8, 3  # 2 query heads, 1 key head, 2 value heads
    qkv = torch.randn(B, T, heads, hs, dtype=torch.float64, requires_grad=True)
    w = (1 + 0.1 * torch.randn(nqk, hs, dtype=torch.float64)).requires_grad_()
    angles = torch.rand(T, hs // 2, dtype=torch.float64).repeat(1, 2)
    f = lambda qkv, w: QKNormRope.apply(qkv, *rope_weights(w, angles.cos(), angles.sin()), 2, 1e-6)  # noqa: E731
    assert torch.autograd.gradcheck(f, (qkv, w))
    outs = f(qkv, w)
    assert [tuple(t.shape) for t in outs] == [(B, 2, T, hs), (B, 1, T, hs), (B, 2, T, hs)]
    assert all(_head_major(t).data_ptr() == t.data_ptr() for t in outs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_function_is_torchs_rms_norm(dtype):
    """RMSNormFunction: F.rms_norm's output and gradients in fp32 (to rounding), the output in x's dtype for bf16
    input (computed in fp32, as before), and gradcheck in float64."""
    torch.manual_seed(0)
    x, grad = (torch.randn(3, 7, 48) * 3).to(dtype), torch.randn(3, 7, 48)
    w = (1 + 0.1 * torch.randn(48)).requires_grad_()
    outs = []
    for f in (lambda x: RMSNormFunction.apply(x, w, 1e-6),
              lambda x: torch.nn.functional.rms_norm(x.float(), (48,), w, 1e-6).to(x.dtype)):
        xx = x.clone().requires_grad_()
        y = f(xx)
        y.float().backward(grad)
        outs.append((y, xx.grad, w.grad))
        w.grad = None
    y, gx, _ = outs[0]
    assert y.dtype == gx.dtype == dtype
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    x64 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w64 = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-6), (x64, w64))


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_the_written_out_backwards_compile(attention):
    """torch.compile traces RMSNormFunction, QKNormRope, CausalAttention and ReluSquaredMLP (aot_eager: dynamo's capture
    and the functionalized forward and backward graphs, without inductor's minutes of codegen): the eager loss and
    gradients."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, **OPTIONS["all"]), attention)
    idx = torch.randint(0, 67, (2, 16))
    losses, grads = [], []
    for f in (m, torch.compile(m, backend="aot_eager")):
        loss = f(idx, idx, return_logits=False)[1]
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in m.parameters()])
        m.zero_grad()
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_rope_docstring_example_and_relative_positions():
    x = torch.tensor([[[[1.0, 0.0]]]])  # (B, nh, T, hs=2): one pair
    cos, sin = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])  # angle pi/2
    assert torch.allclose(apply_rope(x, cos, sin), torch.tensor([[[[0.0, 1.0]]]]))
    # q.k depends on positions only through their difference: what makes rotary positions relative
    config = GPTConfig(**BASE, pos="rope")
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    dots = []
    for start in (0, 5):
        cos, sin = rope_tables(config, torch.arange(start, start + 4))
        dots.append((apply_rope(q, cos[3:4], sin[3:4]) * apply_rope(k, cos[1:2], sin[1:2])).sum())
    assert torch.allclose(dots[0], dots[1], atol=1e-5)


def test_softcap_bounds_logits_and_zero_init_starts_at_the_identity():
    m = model("softcap")
    with torch.no_grad():
        m.lm_head.weight.mul_(1000)
    assert m(torch.randint(0, 67, (1, 16)))[0].abs().max() <= 10.0
    torch.manual_seed(0)
    z = GPT(GPTConfig(**BASE, zero_init_proj=True))
    assert all((b.attn.c_proj.weight == 0).all() and (b.mlp.c_proj.weight == 0).all() for b in z.h)


def test_shapes_widths_and_parameter_names():
    m = GPT(GPTConfig(**BASE, **OPTIONS["llama"]))
    names = dict(m.named_parameters())
    assert "wpe.weight" not in names and "h.0.mlp.c_gate.weight" in names and "lm_head.weight" in names
    assert names["h.0.attn.c_attn.weight"].shape == ((4 + 2 * 2) * 8, 32)  # q: 4 heads, k and v: 2 each, of 8
    assert names["h.0.mlp.c_fc.weight"].shape == (128, 32)  # 8/3 x 32 = 85.3 -> 128 (a multiple of 64)
    q = GPT(GPTConfig(**BASE, qk_norm=True))
    assert dict(q.named_parameters())["h.1.attn.q_norm.weight"].shape == (8,)


@pytest.mark.parametrize("bad, match", [
    (dict(n_kv_head=3), "n_kv_head=3 must divide n_head=4"),
    (dict(pos="rope", n_embd=36, n_head=4), r"even head size; n_embd / n_head = 36 / 4 = 9 is odd: change "
                                            r"model.n_embd or model.n_head, or set an even model.head_dim$"),
    # with head_dim set, n_embd / n_head is not the head size (32 / 4 = 8 is even here): name the field that is
    (dict(pos="rope", head_dim=9), r"even head size; model.head_dim=9 is odd: set model.head_dim to an even number$"),
    (dict(mlp="geglu"), "model.mlp must be one of gelu, relu2, swiglu"),
    (dict(norm="batchnorm"), "model.norm must be one of"),
    (dict(logit_softcap=-1.0), "model.logit_softcap must be >= 0"),
])
def test_bad_options_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**BASE, **bad})


def test_rope_checks_the_head_size_it_uses():
    # 36 / 4 = 9 would be odd, but with head_dim the heads are 16 wide, which rotary can pair
    assert GPTConfig(**{**BASE, "n_embd": 36}, pos="rope", head_dim=16).head_size == 16


def test_init_loss_near_ln_vocab_with_every_option():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, **OPTIONS["all"]))
    idx = torch.randint(0, 67, (4, 16))
    assert abs(m(idx, idx)[1].item() - math.log(67)) < 0.2


def test_swiglu_and_rope_are_llamas():
    """The pieces against transformers' Llama code (the reference HF export will rely on)."""
    transformers = pytest.importorskip("transformers", reason="test dependency: pip install -e '.[dev]'")
    from transformers.models.llama import modeling_llama as hf

    from gptkit.torch.model import MLP

    c = GPTConfig(**{**BASE, "mlp": "swiglu", "pos": "rope", "rope_theta": 500.0})
    mlp = MLP(c)
    ref = hf.LlamaMLP(transformers.LlamaConfig(hidden_size=32, intermediate_size=c.hidden_size, hidden_act="silu"))
    with torch.no_grad():
        for a, b in ((ref.gate_proj, mlp.c_gate), (ref.up_proj, mlp.c_fc), (ref.down_proj, mlp.c_proj)):
            a.weight.copy_(b.weight)
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(mlp(x), ref(x))
    rotary = hf.LlamaRotaryEmbedding(transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, rope_theta=500.0,
                                                               max_position_embeddings=16))
    q, k = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    cos, sin = rotary(q, torch.arange(3, 9)[None])
    want = hf.apply_rotary_pos_emb(q, k, cos, sin)
    ours = rope_tables(c, torch.arange(3, 9))
    torch.testing.assert_close((apply_rope(q, *ours), apply_rope(k, *ours)), want)
