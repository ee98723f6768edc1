"""The models in PyTorch: `Bigram` (the lecture's first model) and `GPT` (GPT-2), plus a KV cache.

GPT is GPT-2: learned positions, pre-LayerNorm blocks, GELU MLP (tanh approximation unless asked), lm_head tied to
wte, GPT-2's init. Parameter names follow OpenAI's checkpoint without the `transformer.` prefix
(`wte, wpe, h.{i}.attn.c_attn, h.{i}.mlp.c_fc, ln_f, lm_head`), so a GPT-2 import is one name map
plus Conv1D transposes. Attention runs through `scaled_dot_product_attention` (flash kernels on GPUs);
the explicit masked softmax of the lecture is kept (`attention="explicit"`) and tested to agree.

Not here: I/O (weights from files and hubs: gptkit.weights.from_pretrained), printing, optimizers, sampling (see
gptkit.sample), data. The model module imports only gptkit.config. The only link to the tokenizer is
`config.vocab_size`; padded rows (`pad_vocab_to`) are sliced off the logits, so a padded
id can never be sampled or enter the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from gptkit.config import GPTConfig

ATTENTION = ("sdpa", "explicit")


class KVCache:
    """Keys and values of the tokens seen so far, per layer: (B, nh, block_size, hs) buffers and a length."""

    def __init__(self, config: GPTConfig, batch_size: int, device, dtype) -> None:
        hs = config.n_embd // config.n_head
        shape = (batch_size, config.n_head, config.block_size, hs)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.pos = 0  # tokens cached; the next token sits at this position

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at pos..pos+T and return all keys/values so far."""
        T = k.size(2)
        self.k[layer][:, :, self.pos : self.pos + T] = k
        self.v[layer][:, :, self.pos : self.pos + T] = v
        end = self.pos + T
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True  # scaled init, see GPT._init_weights
        self.n_head, self.dropout, self.attention = config.n_head, config.dropout, attention
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.append(layer, k, v)  # (B, nh, past + T, hs)
        p = self.dropout if self.training else 0.0
        if self.attention == "sdpa":
            if past == 0 or T == 1:  # plain causal, or one new token that may see everything
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=T > 1)
            else:  # several new tokens after a prefix: is_causal would align the mask top-left
                mask = _causal_mask(T, past, x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            y = _explicit_attention(q, k, v, past, p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


def _causal_mask(T: int, past: int, device) -> torch.Tensor:
    """(T, past + T) bool, True where query t (at position past + t) may see the key.

    Example: T=2, past=1 -> [[True, True, False], [True, True, True]]
    """
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)


def _explicit_attention(q, k, v, past: int, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs) + causal mask) v, the lecture's way. q (B, nh, T, hs), k/v (B, nh, past+T, hs)."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, past + T)
    att = att.masked_fill(~_causal_mask(q.size(2), past, q.device), float("-inf"))
    att = F.softmax(att.float(), dim=-1).to(q.dtype)
    att = F.dropout(att, p=p, training=p > 0)
    return att @ v  # (B, nh, T, hs)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.residual_projection = True
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = "tanh" if config.gelu == "tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, attention)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


def _loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    if targets is None:
        return None
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


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
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, attention) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's init (OpenAI's code and paper, as nanoGPT applies it):

        | tensor                                   | init                                   |
        |------------------------------------------|----------------------------------------|
        | Linear weights, wte, wpe                 | normal(0, 0.02)                        |
        | attn.c_proj / mlp.c_proj weights         | normal(0, 0.02 / sqrt(2 * n_layer))    |
        | Linear biases                            | 0                                      |
        | LayerNorm weight / bias                  | 1 / 0 (torch's default)                |
        | lm_head                                  | tied to wte, or normal(0, 0.02)        |
        """
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_projection", False):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)  # each block adds two branches to the stream
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"{past + T} positions exceed block_size {self.config.block_size}; crop the input")
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, cache, i)
        if cache is not None:
            cache.pos += T
        logits = self.lm_head(self.ln_f(x))[..., : self.config.vocab_size]  # (B, T, vocab_size): no padded ids
        return logits, _loss(logits, targets)

    def new_cache(self, batch_size: int) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.config, batch_size, p.device, p.dtype)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (tied weights once). gpt2 preset: 124,439,808."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

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

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        logits = self.wte(idx)[..., : self.config.vocab_size]  # (B, T, vocab_size)
        return logits, _loss(logits, targets)

    def new_cache(self, batch_size: int) -> None:
        return None  # nothing to cache: the next token depends on the last one only

    def num_params(self, non_embedding: bool = False) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        return 6 * self.config.padded_vocab_size  # a row gather and a softmax; a nominal figure


def build_model(config: GPTConfig, attention: str = "sdpa") -> GPT | Bigram:
    return (GPT if config.arch == "gpt" else Bigram)(config, attention)
