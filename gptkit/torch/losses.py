"""The training loss of a linear head, computed in row chunks so that the (N, vocab) logits never exist whole.

`linear_cross_entropy(h, weight, targets, vocab_size, softcap)` equals
`F.cross_entropy(softcap(h @ weight[:vocab_size].T).float(), targets, ignore_index=-1)` (mean over the targets
that are not -1) and its gradients, but holds one chunk of logits at a time: each chunk's logits are made, turned
into the loss and into their gradient (softmax - one-hot, scaled by the soft-cap's derivative) and multiplied back
into the gradients of h and weight at once, in the forward pass; backward only scales what was kept. At GPT-2's
64 x 1,024 micro-batch and 50,304 columns the plain path holds the bf16 logits (6.6 GB), their fp32 copy and the
fp32 log-softmax (13 GB each) and a gradient as large; this holds 2 x CHUNK_ELEMENTS floats and an fp32 copy
of the head's gradient. The matmuls are the same three as the plain path (logits, d h, d weight), so the FLOPs are
too. (Liger-Kernel's fused linear cross-entropy and Apple's cut cross-entropy do the same in Triton.)

Matmuls run in whatever autocast says (bf16 under bf16 autocast, as lm_head would), on h and the head cast once,
not once per chunk and matmul; the softmax and the sums in fp32. They use the head's padded width (GPT-2's 50,304
columns, a multiple of 64 the GPU's matmul tiles divide: the reason nanoGPT pads) and set the padded columns' logits
to -inf, which gives them zero probability and zero gradient. Not here: the logits for sampling (the model's head does
that), label smoothing, z-loss.
"""

from __future__ import annotations

import torch

# Logits held at once: 2^27 fp32 values = 512 MB. At 50,304 columns that is 2,560 rows (rounded down to a multiple of
# 128, a GPU matmul tile), 26 chunks for the 65,536 rows of a 64 x 1,024 micro-batch (each chunk's matmuls stay
# large enough to fill a GPU); at a char vocab, one chunk.
CHUNK_ELEMENTS = 2**27


def _chunk(h, weight, targets, vocab_size: int, softcap: float, grads: tuple | None, start: int) -> torch.Tensor:
    """The summed loss of rows h (n, C) against targets (n,) (h and weight (V_padded, C) in the matmul dtype); with
    grads = (grad_h (N, C), grad_w (V_padded, C) fp32), adds this chunk's unscaled gradients into them (grad_h's rows
    from start)."""
    z = (h @ weight.T).float()  # (n, V_padded) logits
    if softcap:
        t = torch.tanh(z / softcap)
        z = softcap * t
    if z.size(1) > vocab_size:
        z[:, vocab_size:] = float("-inf")  # padded ids: probability 0, gradient 0
    lse = torch.logsumexp(z, dim=-1)  # (n,)
    valid = targets != -1
    picked = targets.clamp_min(0)
    loss = ((lse - z.gather(1, picked[:, None])[:, 0]) * valid).sum()
    if grads is not None:
        g = z.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
        g[torch.arange(g.size(0), device=g.device), picked] -= 1.0
        g *= valid[:, None]
        if softcap:
            g *= 1.0 - t * t  # d(cap tanh(z / cap)) / dz
        g = g.to(h.dtype)  # once for both matmuls
        grad_h, grad_w = grads
        grad_h[start : start + h.size(0)] = g @ weight  # (n, C)
        grad_w += g.T @ h  # (V, C), summed over chunks in fp32
    return loss


def _losses(h, weight, targets, vocab_size: int, softcap: float, grads: tuple | None) -> torch.Tensor:
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    h, weight = h.to(dtype), weight.to(dtype)  # the casts autocast would redo in every matmul of every chunk
    rows = max(1, CHUNK_ELEMENTS // weight.size(0))
    rows -= rows % 128 if rows >= 128 else 0
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for s in range(0, h.size(0), rows):
        total = total + _chunk(h[s : s + rows], weight, targets[s : s + rows], vocab_size, softcap, grads, s)
    return total


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, vocab_size: int, softcap: float):
        count = (targets != -1).sum().clamp_min(1)  # a tensor: no host sync; a batch with no target has loss 0
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = _losses(h, weight, targets, vocab_size, softcap, (grad_h, grad_w))
        ctx.save_for_backward(grad_h, grad_w, count)
        ctx.weight_dtype = weight.dtype  # the gradient goes back in the parameter's dtype (fp32 under autocast)
        return total / count

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_out / count
        return grad_h * scale.to(grad_h.dtype), (grad_w * scale).to(ctx.weight_dtype), None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab_size: int,
                         softcap: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of softcap(h @ weight[:vocab_size].T) against targets (-1 = ignored), chunked (see the
    module docstring). h (N, C), weight (V_padded, C), targets (N,). Padded rows of weight get zero gradient."""
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):
        return _losses(h, weight, targets, vocab_size, softcap, None) / (targets != -1).sum().clamp_min(1)
    return _LinearCrossEntropy.apply(h, weight, targets, vocab_size, softcap)
