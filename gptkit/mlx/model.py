"""gptkit's GPT-2 in MLX: the same modules and parameter names as gptkit.torch.model (wte, wpe, h.{i}.ln_1,
h.{i}.attn.c_attn, ..., ln_f; lm_head tied to wte), the same init and a KV cache, so checkpoints are shared with
the PyTorch backend (weights in and out: gptkit.mlx.weights; this module imports only the config).

`model(idx, cache=None) -> logits (B, T, vocab_size)`; the loss is `loss_fn(model, x, y)` (MLX's
value_and_grad differentiates a function of the model). Never imports torch.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from gptkit.config import GPTConfig


def gelu(x: mx.array, approximate: str) -> mx.array:
    """GELU: "tanh" is GPT-2's approximation (torch's approximate="tanh"), "none" the exact erf form."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + mx.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    return nn.gelu(x)


class KVCache:
    """gptkit.torch.model.KVCache in MLX: preallocated (B, n_kv_head, block_size, hs) keys and values per layer, each
    row's next position `pos` (B,), and the `span` of slots attention reads. MLX arrays are values, so `write` replaces
    a layer's buffers; rows are prefilled through a `fill` view, as in torch."""

    def __init__(self, config: GPTConfig, batch_size: int, dtype=mx.float32, n_layer: int | None = None,
                 length: int | None = None) -> None:
        length = length or config.block_size
        shape = (batch_size, config.kv_heads, length, config.head_size)
        n_layer = config.n_layer if n_layer is None else n_layer
        self.k = [mx.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.v = [mx.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.pos = mx.zeros((batch_size,), dtype=mx.int32)
        self.span = length

    @classmethod
    def of(cls, k: list[mx.array], v: list[mx.array], pos: mx.array, span: int) -> KVCache:
        """A cache over existing arrays (the engine keeps them in its state, as mx.compile wants)."""
        cache = cls.__new__(cls)
        cache.k, cache.v, cache.pos, cache.span = k, v, pos, span
        return cache

    def write(self, layer: int, k: mx.array, v: mx.array, positions: mx.array):
        """Store k, v (B, n_kv, T, hs) at positions (B, T); the first `span` keys/values and the (B, 1, T, span)
        mask, True where a query may see a key (as gptkit.torch.model.KVCache.write)."""
        at = mx.broadcast_to(positions[:, None, :, None], k.shape)
        self.k[layer] = mx.put_along_axis(self.k[layer], at, k.astype(self.k[layer].dtype), axis=2)
        self.v[layer] = mx.put_along_axis(self.v[layer], at, v.astype(self.v[layer].dtype), axis=2)
        mask = mx.arange(self.span)[None, None, :] <= positions[:, :, None]  # (B, T, span)
        return self.k[layer][:, :, : self.span], self.v[layer][:, :, : self.span], mask[:, None]

    def fill(self, index: mx.array) -> KVCache:
        """A cache through which a forward of T tokens fills rows `index` (n,) at positions 0..T-1, attention causal
        over those T tokens (padding beyond a row's length is never read), as gptkit.torch.model.KVCache.fill; this
        cache's pos is the caller's to set."""
        view = _Fill.of(self.k, self.v, mx.zeros(index.shape, dtype=mx.int32), 0)
        view.index = index
        return view


class _Fill(KVCache):
    """KVCache.fill's view: writes go to rows `index` from position 0, and attention is causal over the new tokens."""

    def write(self, layer: int, k: mx.array, v: mx.array, positions: mx.array):
        T = k.shape[2]
        k, v = k.astype(self.k[layer].dtype), v.astype(self.v[layer].dtype)
        self.k[layer][self.index, :, :T] = k  # (n, n_kv, T, hs) into the chosen rows (the list's arrays, in place)
        self.v[layer][self.index, :, :T] = v
        return k, v, mx.arange(T)[None, :] <= mx.arange(T)[:, None]  # (T, T) causal


def _causal_mask(T: int) -> mx.array:
    """Additive (T, T) mask: 0 where query t may see key s (s <= t), -inf elsewhere."""
    return mx.where(mx.arange(T)[None, :] <= mx.arange(T)[:, None], 0.0, -mx.inf).astype(mx.float32)


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    """config.norm over dim (default n_embd), as gptkit.torch.model.make_norm."""
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C, hs = config.n_embd, config.head_size
        self.n_head, self.n_kv, self.hs, self.p = config.n_head, config.kv_heads, hs, config.dropout
        self.c_attn = nn.Linear(C, (self.n_head + 2 * self.n_kv) * hs, bias=config.bias)
        self.c_proj = nn.Linear(self.n_head * hs, C, bias=config.bias)
        if config.qk_norm:
            self.q_norm, self.k_norm = nn.RMSNorm(hs, eps=config.norm_eps), nn.RMSNorm(hs, eps=config.norm_eps)
        self.qk_norm, self.rope_theta = config.qk_norm, config.rope_theta if config.pos == "rope" else 0.0
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def __call__(self, x: mx.array, cache: KVCache | None = None, layer: int = 0,
                 positions: mx.array | None = None) -> mx.array:
        B, T, C = x.shape
        q, k, v = mx.split(self.c_attn(x), [self.n_head * self.hs, (self.n_head + self.n_kv) * self.hs], axis=-1)
        q = q.reshape(B, T, self.n_head, self.hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k, v = (t.reshape(B, T, self.n_kv, self.hs).transpose(0, 2, 1, 3) for t in (k, v))  # (B, n_kv, T, hs)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_theta:  # rotate-half layout (traditional=False), as gptkit.torch.model.apply_rope; per-row offsets
            offset = cache.pos if cache is not None else 0
            q, k = (mx.fast.rope(t, self.hs, traditional=False, base=self.rope_theta, scale=1.0, offset=offset)
                    for t in (q, k))
        if cache is not None:
            k, v, allowed = cache.write(layer, k, v, positions)  # (B, n_kv, span, hs), (B, 1, T, span)
            mask = mx.where(allowed, 0.0, -mx.inf).astype(mx.float32)
        else:
            mask = _causal_mask(T) if T > 1 else None
        scale = 1.0 / math.sqrt(self.hs)
        if self.training and self.p > 0:  # dropout on the attention weights, as torch's SDPA dropout_p does
            if self.n_kv != self.n_head:  # key/value head j serves query heads j*g .. j*g + g-1
                k, v = (mx.repeat(t, self.n_head // self.n_kv, axis=1) for t in (k, v))
            att = (q * scale) @ k.transpose(0, 1, 3, 2)
            if mask is not None:
                att = att + mask
            y = self.attn_dropout(mx.softmax(att, axis=-1)) @ v
        else:  # grouped-query attention natively
            y = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, self.n_head * self.hs)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """As gptkit.torch.model.MLP: GELU, ReLU squared, or SwiGLU (c_proj(silu(c_gate(x)) * c_fc(x)))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.kind, self.approximate = config.mlp, "tanh" if config.gelu == "tanh" else "none"
        self.c_fc = nn.Linear(config.n_embd, H, bias=config.bias)
        if config.mlp == "swiglu":
            self.c_gate = nn.Linear(config.n_embd, H, bias=config.bias)
        self.c_proj = nn.Linear(H, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = gelu(h, self.approximate)
        elif self.kind == "relu2":
            h = mx.square(nn.relu(h))
        else:
            h = nn.silu(self.c_gate(x)) * h
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def __call__(self, x: mx.array, cache: KVCache | None = None, layer: int = 0,
                 positions: mx.array | None = None) -> mx.array:
        x = x + self.attn(self.ln_1(x), cache, layer, positions)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 in MLX; see the module docstring. Initialised as gptkit.torch.model.GPT is (GPT-2's scheme)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.arch != "gpt":
            raise ValueError(f"GPT needs arch='gpt', got {config.arch!r}; build_model() picks the class")
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        if config.pos == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = [Block(config) for _ in range(config.n_layer)]
        self.ln_f = make_norm(config)
        if not config.tie_weights:
            self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's init, as gptkit.torch.model: weights N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))
        (or 0
        with zero_init_proj), biases 0, norm scales 1."""
        resid_std = 0.0 if self.config.zero_init_proj else 0.02 / math.sqrt(2 * self.config.n_layer)
        new = []
        for name, p in tree_flatten(self.parameters()):
            if name.endswith("bias"):
                new.append((name, mx.zeros_like(p)))
            elif ".ln_" in name or name.startswith("ln_") or "_norm." in name:
                new.append((name, mx.ones_like(p)))
            else:
                std = resid_std if name.endswith("c_proj.weight") else 0.02
                new.append((name, mx.random.normal(p.shape) * std))
        self.update(tree_unflatten(new))

    def new_cache(self, batch_size: int = 1, dtype=None, length: int | None = None) -> KVCache:
        return KVCache(self.config, batch_size, dtype or self.ln_f.weight.dtype, length=length)  # wte may be int8

    def __call__(self, idx: mx.array, cache: KVCache | None = None, logits_at: mx.array | None = None) -> mx.array:
        """idx (B, T) -> logits (B, T, vocab_size); with a cache, at each row's position (see KVCache); logits_at
        (B,): only that position's logits per row, (B, 1, vocab_size)."""
        B, T = idx.shape
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
            positions = mx.arange(T)
        else:
            positions = cache.pos[:, None] + mx.arange(T)[None, :]  # (B, T)
        x = self.wte(idx)
        if self.config.pos == "learned":  # rotary positions enter inside attention instead
            x = x + self.wpe(positions)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, cache, i, positions)
        if cache is not None:
            cache.pos = cache.pos + T
        if logits_at is not None:
            x = x[mx.arange(B), logits_at][:, None]
        x = self.ln_f(x)
        logits = self.wte.as_linear(x) if self.config.tie_weights else self.lm_head(x)
        logits = logits[..., : self.config.vocab_size]
        if self.config.logit_softcap:
            logits = self.config.logit_softcap * mx.tanh(logits / self.config.logit_softcap)
        return logits

    def num_params(self) -> int:
        return sum(p.size for _, p in tree_flatten(self.parameters()))


class Bigram(nn.Module):
    """The next token's logits read from a table row of the current token, as gptkit.torch.model.Bigram."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.padded_vocab_size)
        self.wte.weight = mx.random.normal(self.wte.weight.shape) * 0.02

    def new_cache(self, batch_size: int = 1, dtype=None, length: int | None = None) -> KVCache:
        return KVCache(self.config, batch_size, n_layer=0, length=length)  # positions only: nothing to cache

    def __call__(self, idx: mx.array, cache: KVCache | None = None, logits_at: mx.array | None = None) -> mx.array:
        if cache is not None:
            cache.pos = cache.pos + idx.shape[1]
        if logits_at is not None:
            idx = idx[mx.arange(idx.shape[0]), logits_at][:, None]
        return self.wte(idx)[..., : self.config.vocab_size]

    def num_params(self) -> int:
        return self.wte.weight.size


def build_model(config: GPTConfig) -> GPT | Bigram:
    return (GPT if config.arch == "gpt" else Bigram)(config)


def loss_fn(model, x: mx.array, y: mx.array) -> mx.array:
    """Mean cross-entropy over targets != -1 (the torch model's ignore_index), in float32."""
    logits = model(x).astype(mx.float32)
    losses = nn.losses.cross_entropy(logits, mx.maximum(y, 0), reduction="none")
    keep = (y != -1).astype(mx.float32)
    return (losses * keep).sum() / mx.maximum(keep.sum(), 1.0)
