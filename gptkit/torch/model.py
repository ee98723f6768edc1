"""The models in PyTorch: `Bigram` (the lecture's first model) and `GPT` (GPT-2), plus a KV cache.

GPT is GPT-2 by default: learned positions, pre-LayerNorm blocks, GELU MLP (tanh approximation unless asked), lm_head
tied to wte, GPT-2's init. The modern options of GPTConfig are small pieces here, each off by default: rotary
positions (`rope_tables`, `apply_rope`), RMSNorm (`make_norm`), QK-norm, ReLU^2 and SwiGLU MLPs, grouped-query
attention, logit soft-capping, zero-initialized output projections; gptkit.mlx.model has the same pieces. Parameter
names follow OpenAI's checkpoint without the `transformer.` prefix (`wte, wpe, h.{i}.attn.c_attn, h.{i}.mlp.c_fc, ln_f,
lm_head`), so a GPT-2 import is one name map plus Conv1D transposes. Attention runs through
`scaled_dot_product_attention` (flash kernels on GPUs); the explicit masked softmax of the lecture is kept
(`attention="explicit"`) and tested to agree. Three pieces have their backward written out as autograd Functions,
because eager autograd through torch's CPU kernels makes several passes over the activations where a few do (each
tested against the plain form and by gradcheck): RMSNorm (`RMSNormFunction`), QK-norm with rotary for a whole
sequence (`QKNormRope`) and the explicit path's causal attention (`CausalAttention`); ReLU^2 too (`ReluSquared`),
and a ReLU^2 MLP as a whole in training (`ReluSquaredMLP`).

Not here: I/O (weights from files and hubs: gptkit.torch.weights.from_pretrained), printing, optimizers, sampling (see
gptkit.torch.generate), data. The model module imports only gptkit.config. The only link to the tokenizer is
`config.vocab_size`; padded rows (`pad_vocab_to`) are sliced off the logits, so a padded
id can never be sampled or enter the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from gptkit.config import GPTConfig
from gptkit.torch.losses import linear_cross_entropy

ATTENTION = ("sdpa", "explicit")


class KVCache:
    """A preallocated key/value cache for generation: per layer (B, n_kv_head, block_size, hs) buffers and each
    row's next position `pos` (B,) as a tensor, so a one-token step has the same shapes at every position (what
    torch.compile and CUDA graphs need) and rows may stand at different positions (prompts of different lengths,
    requests joining a running batch: gptkit.torch.generate).

    A forward of T tokens through the cache puts row b's tokens at positions pos[b] .. pos[b]+T-1, lets each see
    the keys at positions <= its own (whatever lies beyond a row's length is never seen) and advances pos by T.
    Attention reads the first `span` slots, which must cover every row's pos + T (the engine keeps it a power of
    two, so few shapes get compiled). Keeping pos + T <= block_size is the caller's job: the model does not check
    it, since that would cost a host sync per token.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32, n_layer=None,
                 length: int | None = None) -> None:
        length = length or config.block_size  # positions it holds: the model's context, or fewer to save memory
        shape = (batch_size, config.kv_heads, length, config.head_size)
        n_layer = config.n_layer if n_layer is None else n_layer
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.span, self.dense = length, False  # dense: every row's pos + T == span, so no mask is needed

    def fill(self, index: torch.Tensor) -> KVCache:
        """A cache through which a forward of T tokens fills rows `index` (n,) at positions 0..T-1 (a prefill):
        attention is plain causal over those T tokens, so each prompt of a right-padded batch fills its row as if
        alone, and the keys the padding writes lie beyond the row's length, where nothing reads them (the row's next
        token overwrites slot pos, the mask hides slots > pos). The view's pos (n,) starts at 0; this cache's pos is
        the caller's to set (each row's real length)."""
        view = object.__new__(_Fill)
        view.k, view.v, view.index = self.k, self.v, index
        view.pos, view.span, view.dense = torch.zeros_like(index), 0, False
        return view

    def tensors(self) -> list[torch.Tensor]:
        return [*self.k, *self.v, self.pos]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        """Store k, v (B, n_kv, T, hs) at positions (B, T); return the first `span` keys/values and the mask
        (B, 1, T, span), True where a query may see a key.

        Example: positions [[1, 2]], span 3 -> mask [[[[True, True, False], [True, True, True]]]]
        """
        at = positions[:, None, :, None].expand_as(k)
        self.k[layer].scatter_(2, at, k.to(self.k[layer].dtype))
        self.v[layer].scatter_(2, at, v.to(self.v[layer].dtype))
        k, v = self.k[layer][:, :, : self.span], self.v[layer][:, :, : self.span]
        if self.dense and positions.size(1) == 1:
            return k, v, None  # one token per row, each seeing every slot read
        slots = torch.arange(self.span, device=positions.device)
        mask = slots[None, None, :] <= positions[:, :, None]  # (B, T, span)
        return k, v, mask[:, None]


class _Fill(KVCache):
    """KVCache.fill's view: writes go to rows `index` from position 0, and attention is causal over the new tokens."""

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        T = k.size(2)
        k, v = k.to(self.k[layer].dtype), v.to(self.v[layer].dtype)  # attend to what later steps will read
        self.k[layer][self.index, :, :T] = k  # (n, n_kv, T, hs) into the chosen rows
        self.v[layer][self.index, :, :T] = v
        return k, v, None


# -- the options, one small piece each ---------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last dim (Llama, Qwen3): no mean subtracted, no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":  # torch's CPU rms_norm is a composite (see RMSNormFunction); CUDA's is fused
            return RMSNormFunction.apply(x, self.weight, self.eps)
        return F.rms_norm(x.float(), (x.size(-1),), self.weight, self.eps).to(x.dtype)  # in fp32, as LayerNorm


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dim, keepdim: one pass over x (a norm) instead of squares written."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.size(-1)).add_(eps).rsqrt_()


def _rms_norm_grad(gn: torch.Tensor, n: torch.Tensor, r: torch.Tensor, out: torch.Tensor | None = None):
    """x's gradient from n's (gn, overwritten) for n = x r, r = _inv_rms(x): r (gn - n mean(gn n))."""
    dot = torch.linalg.vecdot(gn, n, dim=-1).unsqueeze_(-1).div_(n.size(-1))
    return torch.mul(gn.addcmul_(n, dot, value=-1), r, out=out)


class RMSNormFunction(torch.autograd.Function):
    """F.rms_norm(x, weight) in fp32 or wider (as LayerNorm under autocast) with a written-out backward: torch's CPU
    rms_norm is a composite whose autograd runs about twice the elementwise passes (tests hold both equal)."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        n = x.to(torch.promote_types(x.dtype, torch.float32))
        r = _inv_rms(n, eps)
        n = n * r
        ctx.save_for_backward(n, r, weight)
        return (n * weight).to(x.dtype)

    @staticmethod
    def backward(ctx, gy):
        n, r, weight = ctx.saved_tensors
        x_dtype, gy = gy.dtype, gy.to(n.dtype)  # the output's gradient comes in the output's dtype, which is x's
        gw = (gy * n).sum(tuple(range(gy.dim() - 1))).to(weight.dtype)
        return _rms_norm_grad(gy * weight, n, r).to(x_dtype), gw, None


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    """config.norm over dim (default n_embd): GPT-2's LayerNorm (with bias if config.bias) or RMSNorm."""
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


def rope_tables(config: GPTConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of positions (T,) -> (T, hs), or per row (B, T) -> (B, 1, T, hs): pair i turns at
    theta^(-2i/hs) radians per position, each angle written twice (HF's rotate-half layout, so Llama/Qwen
    weights need no permutation)."""
    hs = config.head_size
    inv_freq = config.rope_theta ** -(torch.arange(0, hs, 2, dtype=torch.float32, device=positions.device) / hs)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, hs)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B, 1, T, hs): one table per row, shared by the heads
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x[i], x[i + hs/2]) pair of x (..., hs) by its position's angle (cos and sin broadcast to x: (T, hs)
    for x (B, nh, T, hs)).

    Example (hs=2, angle pi/2): [1, 0] -> [0, 1]
    """
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


def rope_weights(w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """QK-norm's weights w (heads, hs) and rotary's tables cos, sin (T, hs) as the two (heads, T, hs) tables of
    QKNormRope: rope(n * w) = n * C + swap(n) * S for swap(n) = (n2, n1) (n's halves exchanged), since rotate-half
    gives (n1 w1 cos - n2 w2 sin, n2 w2 cos + n1 w1 sin): C = w cos, S = (-w2, w1) sin."""
    h = w.size(-1) // 2
    return w[:, None] * cos, torch.cat([-w[:, h:], w[:, :h]], dim=-1)[:, None] * sin


class QKNormRope(torch.autograd.Function):
    """QK-norm then rotary on the queries and keys of a fused qkv (B, T, heads, hs), with a written-out backward:
    y = n * C + swap(n) * S for n = x / rms(x), x the first nqk heads (C's and S's: rope_weights has them), the first
    nq of them queries, in fp32 or wider (as RMSNorm). Returns q, k, v (B, heads, T, hs), each a view of head-major
    storage (heads, B, T, hs), the layout in which CausalAttention folds heads and batch into one batch of matrices
    without a copy. Autograd through the separate steps runs about twice the elementwise passes over these tensors,
    each short along hs (tests hold both equal)."""

    @staticmethod
    def forward(ctx, qkv, C, S, nq: int, eps: float):
        (B, T, _, hs), nqk = qkv.shape, C.size(0)
        h = hs // 2
        x = qkv[:, :, :nqk].to(torch.promote_types(qkv.dtype, torch.float32))
        r = _inv_rms(x, eps).permute(2, 0, 1, 3)  # (nqk, B, T, 1)
        n = torch.mul(x.permute(2, 0, 1, 3), r, out=x.new_empty(nqk, B, T, hs))
        C4, S4 = C[:, None], S[:, None]  # (nqk, 1, T, hs): shared by the batch
        y = torch.mul(n, C4)
        y[..., :h].addcmul_(n[..., h:], S4[..., :h])
        y[..., h:].addcmul_(n[..., :h], S4[..., h:])
        ctx.save_for_backward(n, r, C, S)
        y, v = y.to(qkv.dtype), qkv[:, :, nqk:].permute(2, 0, 1, 3).contiguous()  # v (n_kv, B, T, hs)
        return y[:nq].transpose(0, 1), y[nq:].transpose(0, 1), v.transpose(0, 1)

    @staticmethod
    def backward(ctx, gq, gk, gv):
        n, r, C, S = ctx.saved_tensors
        (nqk, B, T, hs), nq = n.shape, gq.size(1)  # gq (B, nq, T, hs), as q
        h = hs // 2
        gy = n.new_empty(nqk, B, T, hs)
        gy[:nq], gy[nq:] = gq.transpose(0, 1), gk.transpose(0, 1)
        C4, S4 = C[:, None], S[:, None]
        gn = torch.mul(gy, C4)  # y's gradient back through the tables, then through the norm
        gn[..., h:].addcmul_(gy[..., :h], S4[..., :h])
        gn[..., :h].addcmul_(gy[..., h:], S4[..., h:])
        gS = torch.cat([(gy[..., :h] * n[..., h:]).sum(1), (gy[..., h:] * n[..., :h]).sum(1)], dim=-1)
        gC = (gy * n).sum(1)
        g = gv.new_empty(B, T, nqk + gv.size(1), hs)
        _rms_norm_grad(gn, n, r, out=g[:, :, :nqk].permute(2, 0, 1, 3))
        g[:, :, nqk:] = gv.transpose(1, 2)
        return g, gC, gS, None, None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        C, hs = config.n_embd, config.head_size
        self.n_head, self.n_kv, self.hs = config.n_head, config.kv_heads, hs
        self.c_attn = nn.Linear(C, (self.n_head + 2 * self.n_kv) * hs, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(self.n_head * hs, C, bias=config.bias)
        self.c_proj.residual_projection = True  # scaled init, see GPT._init_weights
        if config.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(hs, config.norm_eps), RMSNorm(hs, config.norm_eps)
        self.qk_norm, self.dropout, self.attention = config.qk_norm, config.dropout, attention
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None, layer: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        nq, hs = self.n_head, self.hs
        qkv = self.c_attn(x).view(B, T, nq + 2 * self.n_kv, hs)  # the heads side by side: queries, keys, values
        p = self.dropout if self.training else 0.0
        if cache is None and rope is not None and rope[0].dim() == 2 and self.qk_norm and type(self.q_norm) is RMSNorm:
            return self._attend(*self._normed_rotated(qkv, rope), None, p)
        qk, v = qkv[:, :, : nq + self.n_kv], qkv[:, :, nq + self.n_kv :]
        # Queries and keys take QK-norm and rotary together, one pass over both (half the elementwise kernels)
        if self.qk_norm and type(self.q_norm) is RMSNorm:
            n = F.rms_norm(qk.float(), (hs,), None, self.q_norm.eps)  # in fp32, as RMSNorm
            qk = (n * self._qk_norm_weight()).to(qk.dtype)
        elif self.qk_norm:  # FSDP's norm (gptkit.torch.fsdp): its weight is whole only while its own forward runs
            qk = torch.cat([self.q_norm(qk[:, :, :nq]), self.k_norm(qk[:, :, nq:])], dim=2)
        if rope is not None:  # tables (T, hs) or (B, 1, T, hs) -> (T, 1, hs) or (B, T, 1, hs): shared by the heads
            qk = apply_rope(qk, *(t.unsqueeze(-2) if t.dim() == 2 else t.transpose(1, 2) for t in rope))
        q, k, v = (t.transpose(1, 2) for t in (qk[:, :, :nq], qk[:, :, nq:], v))  # (B, heads, T, hs)
        mask = None  # None: plain causal over these T tokens
        if cache is not None:
            k, v, mask = cache.write(layer, k, v, positions)  # (B, n_kv, span, hs), mask (B, 1, T, span)
        return self._attend(q, k, v, mask, p)

    def _qk_norm_weight(self) -> torch.Tensor:
        """QK-norm's weights per head of qkv's queries and keys (heads, hs): q_norm's for the queries, then k_norm's."""
        hs = self.hs
        return torch.cat([self.q_norm.weight.expand(self.n_head, hs), self.k_norm.weight.expand(self.n_kv, hs)])

    def _normed_rotated(self, qkv: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """QK-norm and rotary of a whole sequence's qkv (B, T, heads, hs) in one QKNormRope: (q, k, v), each
        (B, heads, T, hs); the same numbers as the separate steps of forward, in fewer passes over the tensors."""
        return QKNormRope.apply(qkv, *rope_weights(self._qk_norm_weight(), *rope), self.n_head, self.q_norm.eps)

    def _attend(self, q, k, v, mask: torch.Tensor | None, p: float) -> torch.Tensor:
        """Attention of q (B, nh, T, hs) over k, v (B, n_kv, S, hs), then the output projection: (B, T, C)."""
        B, _, T, _ = q.shape
        if self.n_kv != self.n_head:  # grouped-query: key/value head j serves query heads j*g .. j*g + g-1
            k, v = (t.repeat_interleave(self.n_head // self.n_kv, dim=1) for t in (k, v))
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None and T > 1)
        elif mask is None and p == 0.0 and k.size(2) == T and q.dtype in (torch.float32, torch.float64):
            y = CausalAttention.apply(q, k, v)
        else:
            y = _explicit_attention(q, k, v, mask, p)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.hs)  # (B, T, nh * hs): heads side by side
        return self.resid_dropout(self.c_proj(y))


def _explicit_attention(q, k, v, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs) + mask) v, the lecture's way. q (B, nh, T, hs), k/v (B, nh, S, hs); mask
    (B, 1, T, S) True where allowed, or None for the causal mask of S = T tokens."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, S)
    if mask is None:
        T = q.size(2)
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att.float(), dim=-1).to(q.dtype)
    att = F.dropout(att, p=p, training=p > 0)
    return att @ v  # (B, nh, T, hs)


class CausalAttention(torch.autograd.Function):
    """The explicit path's softmax(q k^T / sqrt(hs) + causal mask) v over a whole sequence (q, k, v (B, nh, T, hs)),
    with a written-out backward: the scores are one batched matmul onto the additive mask, the probabilities
    (B, nh, T, T) are saved, and the backward is four batched matmuls and torch's softmax backward. On CPUs at short
    contexts this beats torch's flash-attention kernel, most in its backward (docs/training.md has the figures)."""

    @staticmethod
    def forward(ctx, q, k, v):
        B, H, T, hs = q.shape
        q3, k3, v3 = (_head_major(t) for t in (q, k, v))
        mask = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
        P = torch.softmax(torch.baddbmm(mask, q3, k3.mT, alpha=1 / math.sqrt(hs)), dim=-1)
        ctx.save_for_backward(q3, k3, v3, P)
        return torch.bmm(P, v3).view(H, B, T, hs).transpose(0, 1)

    @staticmethod
    def backward(ctx, gy):
        q3, k3, v3, P = ctx.saved_tensors
        B, H, T, hs = gy.shape
        gy, scale = _head_major(gy), 1 / math.sqrt(hs)
        gs = torch._softmax_backward_data(torch.bmm(gy, v3.mT), P, -1, P.dtype)  # the scores' gradient
        gq, gk, gv = torch.bmm(gs, k3).mul_(scale), torch.bmm(gs.mT, q3).mul_(scale), torch.bmm(P.mT, gy)
        return tuple(g.view(H, B, T, hs).transpose(0, 1) for g in (gq, gk, gv))


def _head_major(t: torch.Tensor) -> torch.Tensor:
    """(B, H, T, hs) as one batch of (T, hs) matrices in head-major order (H * B, T, hs): a view when t is stored
    head-major (QKNormRope's outputs), else a copy."""
    return t.transpose(0, 1).reshape(-1, *t.shape[2:])


class ReluSquared(torch.autograd.Function):
    """relu(h)^2, with its gradient 2 relu(h) written out: the same numbers as autograd through F.relu(h).square(),
    in two elementwise passes of the backward where autograd takes four (docs/training.md has what it saved)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor) -> torch.Tensor:
        r = F.relu(h)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return grad * r * 2


class ReluSquaredMLP(torch.autograd.Function):
    """c_proj(relu(c_fc(x))^2) with weights w1, b1 (c_fc) and w2, b2 (c_proj), for training in one dtype: the ReLU in
    place on c_fc's fresh output, and in the backward ReLU^2's gradient in place on c_proj's input gradient, with its
    factor 2 moved onto the smaller products (exact: a power of two). The same numbers as the layers through
    ReluSquared (tested bit for bit), with two fewer fresh hidden-sized tensors per layer and step (what a CPU's
    step pays most for: writing them misses the cache)."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        r = F.linear(x, w1, b1).relu_()
        a = r * r
        ctx.save_for_backward(x, w1, w2, r, a)
        return F.linear(a, w2, b2)

    @staticmethod
    def backward(ctx, gy):
        x, w1, w2, r, a = ctx.saved_tensors
        need = ctx.needs_input_grad  # False for an absent bias too
        gy = gy.reshape(-1, w2.size(0))
        gw2 = gy.t() @ a.reshape(-1, a.size(-1)) if need[3] else None
        gb2 = gy.sum(0) if need[4] else None
        gh = torch.mm(gy, w2).mul_(r.reshape(gy.size(0), -1))  # half the gradient of c_fc's output
        gw1 = torch.mm(gh.t(), x.reshape(-1, x.size(-1))).mul_(2) if need[1] else None
        gb1 = gh.sum(0).mul_(2) if need[2] else None
        gx = torch.mm(gh, w1).mul_(2).view(x.shape) if need[0] else None
        return gx, gw1, gb1, gw2, gb2


class MLP(nn.Module):
    """c_proj(act(c_fc(x))): act is GELU (GPT-2) or ReLU squared; swiglu is c_proj(silu(c_gate(x)) * c_fc(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.c_fc = nn.Linear(config.n_embd, H, bias=config.bias)
        if config.mlp == "swiglu":
            self.c_gate = nn.Linear(config.n_embd, H, bias=config.bias)
        self.c_proj = nn.Linear(H, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True
        self.dropout = nn.Dropout(config.dropout)
        self.kind, self.approximate = config.mlp, "tanh" if config.gelu == "tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu2" and torch.is_grad_enabled() and self._one_dtype(x):
            return self.dropout(ReluSquaredMLP.apply(x, self.c_fc.weight, self.c_fc.bias, self.c_proj.weight,
                                                     self.c_proj.bias))
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = F.gelu(h, approximate=self.approximate)
        elif self.kind == "relu2":  # without autograd (evaluation, sampling) in place: h is this forward's own
            h = ReluSquared.apply(h) if torch.is_grad_enabled() else F.relu_(h).square_()
        else:
            h = F.silu(self.c_gate(x)) * h
        return self.dropout(self.c_proj(h))

    def _one_dtype(self, x: torch.Tensor) -> bool:
        """Whether ReluSquaredMLP may run the layers: plain nn.Linear ones whose weights are in x's dtype, no autocast
        (whose casts the layers would otherwise do)."""
        layers = self.c_fc, self.c_proj
        return (all(type(m) is nn.Linear and m.weight.dtype == x.dtype for m in layers)
                and not torch.is_autocast_enabled(x.device.type))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, attention)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None, layer: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer, positions)
        return x + self.mlp(self.ln_2(x))


def _loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    if targets is None:
        return None
    targets = targets.reshape(-1)  # a batch with no target (a chat window of the user's words only) has loss 0
    summed = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets, ignore_index=-1, reduction="sum")
    return summed / (targets != -1).sum().clamp_min(1)


class GPT(nn.Module):
    """GPT-2. `forward(idx, targets=None, cache=None) -> (logits, loss)`; logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        if config.arch != "gpt":
            raise ValueError(f"GPT needs arch='gpt', got {config.arch!r}; build_model() picks the class")
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        self.config = config
        V = config.padded_vocab_size
        self.wte = nn.Embedding(V, config.n_embd)
        if config.pos == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, attention) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        self.activation_checkpointing = False  # a training option (the backend sets it), not part of the model

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's init (OpenAI's code and paper, as nanoGPT applies it):

        | tensor                                   | init                                   |
        |------------------------------------------|----------------------------------------|
        | Linear weights, wte, wpe                 | normal(0, 0.02)                        |
        | attn.c_proj / mlp.c_proj weights         | normal(0, 0.02 / sqrt(2 * n_layer)),   |
        |                                          | or 0 with zero_init_proj               |
        | Linear biases                            | 0                                      |
        | LayerNorm / RMSNorm weight, LN bias      | 1 / 0 (torch's default)                |
        | lm_head                                  | tied to wte, or normal(0, 0.02)        |
        """
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_projection", False):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)  # each block adds two branches to the stream
                if self.config.zero_init_proj:  # each block starts as the identity (modded-nanogpt)
                    std = 0.0
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_at: torch.Tensor | None = None, return_logits: bool = True):
        """idx (B, T) -> (logits (B, T, vocab_size), loss or None). With a cache, the tokens go at each row's
        cache position (see KVCache). logits_at (B,): compute the logits of that one position per row only
        (B, 1, vocab_size): a prefill needs just each prompt's last token. return_logits=False with targets: (None,
        loss), the loss computed in chunks that never hold the whole (B, T, vocab) logits (gptkit.torch.losses; what
        training and evaluation use: the same loss and gradients in a fraction of the memory)."""
        B, T = idx.shape
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"{T} positions exceed block_size {self.config.block_size}; crop the input")
            positions = torch.arange(T, device=idx.device)  # (T,)
        else:
            positions = cache.pos[:, None] + torch.arange(T, device=idx.device)  # (B, T)
        x, rope = self.wte(idx), None  # (B, T, C)
        if self.config.pos == "learned":
            x = x + self.wpe(positions)
        else:  # rotary: positions enter each attention's queries and keys
            rope = rope_tables(self.config, positions)
        x = self.drop(x)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.h):
            if recompute:  # keep each block's input only; its activations are recomputed in the backward
                x = checkpoint(block, x, rope, cache, i, positions, use_reentrant=False)
            else:
                x = block(x, rope, cache, i, positions)
        if cache is not None:
            cache.pos.add_(T)
        if logits_at is not None:
            x = x[torch.arange(B, device=x.device), logits_at][:, None]  # (B, 1, C)
        if targets is not None and not return_logits:
            h = self.ln_f(x).flatten(0, 1)  # (B * T, C)
            c = self.config
            return None, linear_cross_entropy(h, self.lm_head.weight, targets.flatten(), c.vocab_size, c.logit_softcap)
        logits = self.lm_head(self.ln_f(x))[..., : self.config.vocab_size]  # (B, T, vocab_size): no padded ids
        if self.config.logit_softcap:  # smoothly bounded to (-cap, cap)
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits, _loss(logits, targets)

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None, length: int | None = None) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.config, batch_size, p.device, dtype or p.dtype, length=length)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (tied weights once). gpt2 preset: 124,439,808."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.config.pos == "learned" else n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6N + 12 * n_layer * n_embd * T (PaLM appendix B)."""
        c, T = self.config, seq_len or self.config.block_size
        return 6 * self.num_params(non_embedding=True) + 12 * c.n_layer * c.n_embd * T


class Bigram(nn.Module):
    """The next token's logits read from a table row of the current token (makemore / "Let's build GPT")."""

    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.padded_vocab_size)
        torch.nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_at: torch.Tensor | None = None, return_logits: bool = True):
        if cache is not None:
            cache.pos.add_(idx.size(1))  # positions only: the next token depends on the last one alone
        if logits_at is not None:
            idx = idx[torch.arange(idx.size(0), device=idx.device), logits_at][:, None]
        logits = self.wte(idx)[..., : self.config.vocab_size]  # (B, T, vocab_size)
        return logits, _loss(logits, targets)

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None, length: int | None = None) -> KVCache:
        return KVCache(self.config, batch_size, self.wte.weight.device, dtype or self.wte.weight.dtype, n_layer=0,
                       length=length)

    def num_params(self, non_embedding: bool = False) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        return 6 * self.config.padded_vocab_size  # a row gather and a softmax; a nominal figure


def build_model(config: GPTConfig, attention: str = "sdpa") -> GPT | Bigram:
    return (GPT if config.arch == "gpt" else Bigram)(config, attention)
