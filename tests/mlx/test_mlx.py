"""The MLX backend against the PyTorch one: for every config, each model option alone included
(tests/torch/test_model_options.py's OPTIONS), the same weights give the same logits (atol 1e-4, fp32), also read from one
checkpoint file by both, the KV cache equals no cache, attention is causal, and the gradients are finite and equal
torch's; greedy ids are equal across backends (also past block_size), top-k/top-p masks agree.

Skipped, with the reason, where mlx is not installed; CI installs mlx[cpu] and sets GPTKIT_REQUIRE_MLX=1, which
turns a missing mlx into a failure instead of a skip.
"""

import os

import numpy as np
import pytest
import torch

if os.environ.get("GPTKIT_REQUIRE_MLX") == "1":
    import mlx.core  # noqa: F401 (CI: a missing mlx must fail, not skip)
mx = pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from tests.torch.test_model_options import BASE, OPTIONS  # noqa: E402

from gptkit.config import GPTConfig  # noqa: E402
from gptkit.mlx import generate as mg  # noqa: E402
from gptkit.mlx import model as mm  # noqa: E402
from gptkit.mlx import weights as mw  # noqa: E402
from gptkit.torch.generate import filter_logits, generate
from gptkit.torch.model import build_model
from gptkit.torch.weights import model_tensors

CONFIGS = {
    "gpt2-like": GPTConfig(vocab_size=101, block_size=24, n_layer=2, n_head=3, n_embd=48, bias=True, gelu="tanh",
                           pad_vocab_to=64),
    "nanogpt-char": GPTConfig(vocab_size=65, block_size=24, n_layer=2, n_head=2, n_embd=32, bias=False, gelu="exact"),
    "untied": GPTConfig(vocab_size=50, block_size=24, n_layer=1, n_head=2, n_embd=32, tie_weights=False),
    "bigram": GPTConfig(arch="bigram", vocab_size=40, block_size=24),
    # the modern options (tests/torch/test_model_options.py tests them in torch); MLX must compute the same
    "rope": GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, pos="rope", rope_theta=500.0),
    "rmsnorm-qk_norm": GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, norm="rmsnorm",
                                 qk_norm=True, norm_eps=1e-6),
    "relu2-softcap": GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=2, n_embd=32, mlp="relu2",
                               logit_softcap=5.0),
    "llama-gqa": GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=32, n_kv_head=2, pos="rope",
                           norm="rmsnorm", mlp="swiglu", bias=False, tie_weights=False),
    "all": GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=32, n_kv_head=1, pos="rope",
                     norm="rmsnorm", qk_norm=True, mlp="relu2", logit_softcap=8.0, zero_init_proj=True, bias=False),
    # each option alone and the combinations, exactly as tests/torch/test_model_options.py builds them for torch
    **{f"option-{name}": GPTConfig(**BASE, **kw) for name, kw in OPTIONS.items()},
}


def pair(config, seed=0):
    """A torch model with random weights (biases and LN perturbed) and the MLX model loaded with the same."""
    torch.manual_seed(seed)
    tm = build_model(config).eval()
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    xm = mm.build_model(config)
    mw.load_weights(xm, model_tensors(tm))
    xm.eval()
    return tm, xm


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_weights_same_logits(name):
    tm, xm = pair(CONFIGS[name])
    idx = np.random.default_rng(0).integers(0, CONFIGS[name].vocab_size, (3, min(24, CONFIGS[name].block_size)))
    with torch.no_grad():
        want = tm(torch.from_numpy(idx))[0].numpy()
    got = np.array(xm(mx.array(idx)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert mw.model_tensors(xm).keys() == model_tensors(tm).keys()


@pytest.mark.parametrize("saver", ["torch", "mlx"])
@pytest.mark.parametrize("name", ["all", "llama"])
def test_one_checkpoint_gives_the_same_logits_in_both_backends(tmp_path, name, saver):
    """A run of either backend writes its checkpoint (runs.Run's own save, after one step from perturbed weights);
    gptkit.torch.weights.load_model and gptkit.mlx.weights.load_model read that file into models with equal logits, and
    the saving backend's copy computes exactly what its model did in memory."""
    from dataclasses import replace

    from tests.torch.test_backend import tiny_run

    from gptkit.mlx.backend import MLXBackend
    from gptkit.torch.backend import TorchBackend
    from gptkit.torch.weights import load_model
    from gptkit.training.run import Run

    cfg = tiny_run(tmp_path, max_iters=1, eval_interval=1, eval_iters=1)
    config = GPTConfig(**{**BASE, "vocab_size": 65}, **OPTIONS[name])  # 65: the data's characters
    run = Run(replace(cfg, model=config, train=replace(cfg.train, backend=saver)),
              TorchBackend() if saver == "torch" else MLXBackend())
    rng = np.random.default_rng(0)  # off the init: zero projections and unit norms would hide mistakes
    run.backend.load_weights({k: v + 0.05 * rng.standard_normal(v.shape, dtype=np.float32)
                              for k, v in run.backend.weights().items()}, "perturbed")
    assert run.run().step == 1
    tm, _ = load_model(tmp_path / "run", "last")
    xm, _ = mw.load_model(tmp_path / "run", "last")
    assert tm.config == xm.config == config
    idx = rng.integers(0, 65, (3, 16))
    with torch.no_grad():
        want = tm(torch.from_numpy(idx))[0].numpy()
    got = np.array(xm(mx.array(idx)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(want).max() > 1.0  # logits of weights that moved, not of a near-zero model
    run.backend.model.eval()  # the model the run trained computes, in memory, what its file gives
    if saver == "torch":
        for m in run.backend.model.modules():  # SDPA, as the loaded model (a CPU run trains on the explicit path)
            if hasattr(m, "attention"):
                m.attention = "sdpa"
        with torch.no_grad():
            assert np.array_equal(run.backend.model(torch.from_numpy(idx))[0].numpy(), want)
    else:
        assert np.array_equal(np.array(run.backend.model(mx.array(idx))), got)


def test_param_names_counts_and_init_scale_match_torch():
    config = CONFIGS["gpt2-like"]
    xm = mm.build_model(config)
    tm = build_model(config)
    assert xm.num_params() == tm.num_params()
    w = mw.model_tensors(xm)
    assert abs(w["h.0.mlp.c_fc.weight"].std() - 0.02) < 0.002
    assert abs(w["h.1.attn.c_proj.weight"].std() - 0.02 / np.sqrt(4)) < 0.002  # residual projections: 1/sqrt(2L)
    assert (w["h.0.ln_1.weight"] == 1).all() and (w["h.0.attn.c_attn.bias"] == 0).all()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kv_cache_equals_no_cache(name):
    _, xm = pair(CONFIGS[name])
    T = min(20, CONFIGS[name].block_size)
    idx = mx.array(np.random.default_rng(1).integers(0, CONFIGS[name].vocab_size, (2, T)))
    full = np.array(xm(idx))
    cache = xm.new_cache(2)
    parts = [xm(idx[:, :7], cache=cache), xm(idx[:, 7:8], cache=cache), xm(idx[:, 8:T], cache=cache)]
    np.testing.assert_allclose(np.array(mx.concatenate(parts, axis=1)), full, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_causal(name):
    """Changing token 9 leaves the logits of positions 0..8 exactly as they were, and changes position 9's."""
    _, xm = pair(CONFIGS[name])
    V, T = CONFIGS[name].vocab_size, min(20, CONFIGS[name].block_size)
    idx = np.random.default_rng(2).integers(0, V, (2, T))
    changed = idx.copy()
    changed[:, 9] = (idx[:, 9] + 1) % V
    a, b = np.array(xm(mx.array(idx))), np.array(xm(mx.array(changed)))
    assert np.array_equal(a[:, :9], b[:, :9])
    assert not np.allclose(a[:, 9], b[:, 9])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_grads_are_finite_reach_every_parameter_and_equal_torchs(name):
    config = CONFIGS[name]
    mx.random.seed(0)
    xm = mm.build_model(config)  # the real init, zero projections included
    xy = np.random.default_rng(3).integers(0, config.vocab_size, (2, 17))
    xs, ys = np.ascontiguousarray(xy[:, :-1]), np.ascontiguousarray(xy[:, 1:])  # (2, 16) each
    x, y = mx.array(xs), mx.array(ys)
    _, grads = nn.value_and_grad(xm, mm.loss_fn)(xm, x, y)
    grads = dict(tree_flatten(grads))
    assert grads.keys() == dict(tree_flatten(xm.parameters())).keys()
    for k, g in grads.items():
        assert np.isfinite(np.array(g)).all(), k
    silent = sorted(k for k, g in grads.items() if not np.abs(np.array(g)).sum() > 0)
    if config.zero_init_proj:  # with the blocks' outputs at zero, only what feeds them is silent (as in torch)
        assert any("c_proj" in k for k in grads if k not in silent)
    else:
        assert silent == []
    # and from the same (perturbed) weights, the gradients torch's autograd computes
    tm, xm = pair(config)
    tm(torch.from_numpy(xs), torch.from_numpy(ys))[1].backward()
    want = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    _, grads = nn.value_and_grad(xm, mm.loss_fn)(xm, x, y)
    for k, g in tree_flatten(grads):
        np.testing.assert_allclose(np.array(g), want[k], atol=2e-6, rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", ["gpt2-like", "nanogpt-char", "rope", "bigram"])
@pytest.mark.parametrize("compile", [True, False])
def test_greedy_ids_equal_across_backends_past_block_size(name, compile):
    tm, xm = pair(CONFIGS[name], seed=3)
    prompt = np.random.default_rng(2).integers(0, CONFIGS[name].vocab_size, 10).tolist()
    n = 40  # 10 + 40 > block_size 24: the window slides (twice)
    want = generate(tm, prompt, n, temperature=0)
    assert mg.generate(xm, prompt, n, temperature=0, compile=compile) == want


def test_seeded_sampling_draws_the_same_noise_as_torch():
    """The hashed noise is the same integers in both backends, so a seed gives the same tokens (the logits differ
    by float rounding only, far from flipping a draw of this tiny model)."""
    from gptkit.torch.generate import mix32, uniform

    ids = np.arange(0, 2**32, 2**32 // 1000 + 7, dtype=np.int64)
    assert np.array_equal(np.array(mg.mix32(mx.array(ids.astype(np.uint32)))), mix32(torch.from_numpy(ids)).numpy())
    seed, count, vocab = np.array([0, 5, 2**31 + 3]), np.array([0, 1, 99]), np.arange(70)
    want = uniform(torch.from_numpy(seed), torch.from_numpy(count), mix32(torch.from_numpy(vocab))).numpy()
    got = mg.uniform(*(mx.array(a.astype(np.uint32)) for a in (seed, count)), mg.mix32(mx.array(vocab.astype(np.uint32))))
    assert np.array_equal(np.array(got), want)
    tm, xm = pair(CONFIGS["nanogpt-char"], seed=4)
    for kw in ({"temperature": 1.0}, {"temperature": 0.8, "top_k": 10}, {"temperature": 1.2, "top_p": 0.9}):
        assert mg.generate(xm, [1, 2, 3], 30, seed=11, **kw) == generate(tm, [1, 2, 3], 30, seed=11, **kw)


@pytest.mark.parametrize("top_k,top_p", [(5, None), (None, 0.7), (10, 0.5), (1, None), (None, 1.0)])
def test_filter_logits_agrees_with_torch(top_k, top_p):
    logits = np.random.default_rng(3).normal(size=(4, 50)).astype(np.float32) * 3
    want = filter_logits(torch.from_numpy(logits), top_k, top_p).numpy()
    got = np.array(mg.filter_logits(mx.array(logits), top_k, top_p))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[~np.isinf(got)], want[~np.isinf(want)])


def test_seeded_sampling_is_repeatable_batched_and_stops_at_the_stop_token():
    from gptkit.generate.engine import Request, generate_ids

    _, xm = pair(CONFIGS["nanogpt-char"])
    a = mg.generate(xm, [1, 2, 3], 20, temperature=1.0, top_k=10, seed=7)
    b = mg.generate(xm, [1, 2, 3], 20, temperature=1.0, top_k=10, seed=7)
    c = mg.generate(xm, [1, 2, 3], 20, temperature=1.0, top_k=10, seed=8)
    assert a == b and a != c
    stop = a[4]
    cut = mg.generate(xm, [1, 2, 3], 20, temperature=1.0, top_k=10, seed=7, stop_token=stop)
    assert cut == a[: a.index(stop)]
    requests = [Request((1, 2, 3), 20, 1.0, 10, None, 7), Request((5,), 9, 0.0), Request((1, 2, 3), 20, 1.0, 10, None, 8)]
    assert generate_ids(mg.Engine(xm, 2), requests) == [a, mg.generate(xm, [5], 9, temperature=0), c]
    with pytest.raises(ValueError, match="top_p must be in"):
        mg.generate(xm, [1], 3, top_p=1.5)


def test_weights_that_do_not_fit_name_the_tensor():
    xm = mm.build_model(CONFIGS["nanogpt-char"])
    w = mw.model_tensors(xm)
    w["h.1.mlp.c_fc.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"tensor h.1.mlp.c_fc.weight has shape \(3, 3\), the model needs \(128, 32\)"):
        mw.load_weights(xm, w)
    del w["h.1.mlp.c_fc.weight"]
    with pytest.raises(ValueError, match=r"missing \['h.1.mlp.c_fc.weight'\]"):
        mw.load_weights(xm, w)


def test_cli_sample_backend_mlx_equals_torch_greedy(tmp_path, capsys):
    """A run trained with torch samples greedily to the same text with --backend mlx."""
    from gptkit.cli import main

    run = tmp_path / "run"
    assert main(["train", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--max_iters=30",
                 "--eval_interval=30", "--eval_iters=1", "--progress=false", "--sample_tokens=0", "--threads=1",
                 f"--out_dir={run}"]) == 0
    capsys.readouterr()
    outs = {}
    for backend in ("torch", "mlx"):
        assert main(["sample", str(run), "--prompt", "ROMEO:", "--temperature", "0", "--max-new-tokens", "60",
                     "--backend", backend]) == 0
        outs[backend] = capsys.readouterr().out
    assert outs["mlx"] == outs["torch"] and len(outs["mlx"]) > 60


@pytest.mark.parametrize("name", ["gpt2-like", "rope"])
def test_batched_prefill_equals_one_by_one_torch_and_the_uncached_model(name):
    """Six prompts of lengths 1..12 through four rows: two batched prefills (4 rows, then the 2 that join when the
    first four finish together); each fill's logits equal an uncached forward, greedy ids equal one-by-one and torch."""
    from tests.torch.test_generate import _spy_fills

    from gptkit.generate.engine import Request, generate_ids

    tm, xm = pair(CONFIGS[name], seed=3)
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, CONFIGS[name].vocab_size, n).tolist() for n in (5, 1, 12, 3, 8, 2)]
    requests = [Request(tuple(p), 8, temperature=0) for p in prompts]
    engine = mg.Engine(xm, 4)
    fills = _spy_fills(engine)
    got = generate_ids(engine, requests)
    assert got == [mg.generate(xm, p, 8, temperature=0) for p in prompts]
    assert got == [generate(tm, p, 8, temperature=0) for p in prompts]
    assert [rows for rows, _ in fills] == [[2, 0, 3, 1], [0, 1]]  # longest first; slots 0, 1 freed for 4 and 5
    for (rows, logits), first in zip(fills, (0, 4)):
        for row, have in zip(rows, logits):
            want = np.array(xm(mx.array([prompts[first + row]]))[0, -1])
            np.testing.assert_allclose(np.array(have), want, atol=1e-5)


def test_rows_that_fill_at_one_step_slide_together_as_in_torch():
    from gptkit.generate.engine import Request, generate_ids

    tm, xm = pair(CONFIGS["rope"], seed=3)
    rng = np.random.default_rng(4)
    prompts = [tuple(rng.integers(0, CONFIGS["rope"].vocab_size, n).tolist()) for n in (10, 10, 10, 7)]
    requests = [Request(p, 40, temperature=0) for p in prompts]  # rows 0-2 slide at the same steps
    assert generate_ids(mg.Engine(xm, 4), requests) == [generate(tm, list(p), 40, temperature=0) for p in prompts]
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        mg.Engine(xm, 1).add(Request((CONFIGS["rope"].vocab_size,), 2))
