"""gptkit.torch.losses: the chunked linear cross-entropy equals F.cross_entropy of the whole logits, loss and gradients."""

import pytest
import torch
from torch.nn import functional as F

from gptkit.config import GPTConfig
from gptkit.torch import losses
from gptkit.torch.losses import linear_cross_entropy
from gptkit.torch.model import GPT


def _reference(h, weight, targets, vocab_size, softcap):
    z = h @ weight[:vocab_size].T
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    return F.cross_entropy(z.float(), targets, ignore_index=-1)


def _inputs(seed=0, N=37, C=16, V=80):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, C, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 70, (N,), generator=g)
    targets[::5] = -1  # ignored rows
    return h, w, targets


@pytest.mark.parametrize("softcap", [0.0, 3.0])
@pytest.mark.parametrize("chunk_elements", [2**27, 70 * 8, 1])  # one chunk, chunks of 8 rows, one row each
def test_equals_cross_entropy_of_the_whole_logits(monkeypatch, softcap, chunk_elements):
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", chunk_elements)
    h, w, targets = _inputs()
    mine = linear_cross_entropy(h, w, targets, 70, softcap)
    (2.5 * mine).backward()  # an upstream gradient other than 1 is applied too
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = _reference(h2, w2, targets, 70, softcap)
    (2.5 * ref).backward()
    torch.testing.assert_close(mine.double(), ref.double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-5, atol=1e-7)  # fp32 softmax on both sides
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-7)
    assert torch.count_nonzero(w.grad[70:]) == 0  # padded rows: no gradient


def test_without_grad_and_all_ignored():
    h, w, targets = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, targets, 70).double(), _reference(h, w, targets, 70, 0).double())
    # every target ignored (a chat window of only the user's words): loss 0 and no gradient, as in MLX, not
    # F.cross_entropy's nan (a mean over nothing), which would stop a finetuning run as diverged
    none = torch.full_like(targets, -1)
    assert linear_cross_entropy(h, w, none, 70).item() == 0.0
    loss = linear_cross_entropy(h, w, none, 70)
    loss.backward()
    assert not h.grad.any() and not w.grad.any()
    model = GPT(TINY)
    _, plain = model(torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), -1))
    assert plain.item() == 0.0


TINY = GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32, pad_vocab_to=64, logit_softcap=10.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_loss_without_logits_equals_the_logits_path(dtype):
    """The training step's loss (return_logits=False) against the plain path, in fp32 and under bf16 autocast."""
    torch.manual_seed(0)
    model = GPT(TINY)
    idx, targets = torch.randint(0, 67, (3, 16)), torch.randint(0, 67, (3, 16))
    targets[0, :5] = -1
    grads = []
    for return_logits in (True, False):
        model.zero_grad()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits, loss = model(idx, targets, return_logits=return_logits)
        assert (logits is None) != return_logits
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (ref, ref_grads), (mine, my_grads) = grads
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(mine, ref, **tol)
    for name in ref_grads:
        torch.testing.assert_close(my_grads[name], ref_grads[name], **tol, msg=name)


def test_training_with_and_without_chunks(tmp_path):
    """chunked_loss is a memory choice, not a different run: 12 steps give the same losses to fp32 rounding."""
    from tests.torch.test_backend import tiny_run

    from gptkit.torch.backend import train

    runs = [train(tiny_run(tmp_path, name=f"run{c}", chunked_loss=c)) for c in (False, True)]
    plain, chunked = ([e[k] for e in r.evals for k in ("train_loss", "val_loss")] for r in runs)
    assert chunked == pytest.approx(plain, rel=1e-5) and len(plain) == 6
