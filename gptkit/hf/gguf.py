"""GGUF, llama.cpp's file (also Ollama's and LM Studio's): a gptkit model of a shape llama.cpp runs, with its
byte-level BPE tokenizer and chat template, written with `gguf` (llama.cpp's own Python writer; the `gguf` extra).

- Architectures: GPT-2 (`gpt2`: learned positions, LayerNorm, tanh GELU, biases), Llama (`llama`: rotary, RMSNorm,
  SwiGLU, GQA, no biases) and Qwen3 (`qwen3`: Llama's plus QK-norm). The weights go through the HF tables
  (gptkit.hf.arch) and are renamed as llama.cpp's converter names them; Llama's q and k rows are reordered for
  llama.cpp's rotary, which pairs neighbouring dimensions where HF pairs the two halves (Qwen3's is HF's). What
  llama.cpp cannot compute exactly is refused before anything is written, naming the option: anything HF has no
  architecture for (ReLU^2, soft-capping), exact GELU (llama.cpp's is tanh), biases in a Llama.
- The tokenizer: every token as HF's byte-level text, its type (the special tokens are control tokens), the merges,
  bos/eos, and `tokenizer.ggml.pre`: the name of the split llama.cpp applies, the one of GPT-2, Llama 3 (= GPT-4's)
  or Qwen2 whose regex splits a probe text as the tokenizer's own pattern does; any other split, and char or word
  tokenizers, are refused with the reason.
- A chat model's format goes with it: `tokenizer.chat_template` (ChatML as Jinja), and its end of turn as eos.
- dtype: f32, f16 or bf16 (matrices; norms and biases stay f32, as llama.cpp's converter keeps them), or q8_0
  (matrices whose rows are whole blocks of 32, else f16).

The file is written beside its destination and renamed into place. Not here: reading GGUF (llama.cpp does), the
Ollama Modelfile (gptkit.cli.export).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gptkit.config import GPTConfig
from gptkit.generate.chat import end_of_generation
from gptkit.hf.arch import GPT2, LLAMA, arch_for, tensors_to_hf

DTYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp's names of pre-tokenizer splits, each with its regex as llama.cpp applies it
PRE_TOKENIZERS = {
    "gpt-2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama-bpe": r"""(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                 r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
             r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
# What tells the splits apart: contractions in both cases, digit runs, spaces and newlines in runs, punctuation,
# letters after punctuation, non-Latin scripts.
PROBE = ("I'm here, you're THERE. I'LL go; he'd've said 'no'!\n\n  Numbers: 1 22 333 4444 55555 3.14159 1,000,000\n"
         "\t\ttabs  and   spaces   \r\n  trailing   \n...!!! ??? ---(x)[y]{z} @user #tag $9.99 100% a+b=c\n"
         "Привет мир, 你好世界 こんにちは 안녕하세요 مرحبا שלום 🎉🚀 café naïve über\n   \n\n\nend  ")
LLAMA_CPP_ARCH = {"gpt2": "gpt2", "llama": "llama", "qwen3": "qwen3"}


def check_exportable(config: GPTConfig) -> str:
    """The llama.cpp architecture a gptkit model is, or ValueError naming the option llama.cpp cannot run exactly."""
    arch = arch_for(config)  # refuses what no HF architecture is (llama.cpp's are a subset)
    if arch is GPT2 and config.gelu != "tanh":
        raise ValueError(f"llama.cpp's GPT-2 computes the tanh GELU; this run has model.gelu={config.gelu!r}. Train "
                         "with --gelu=tanh to export it to GGUF (the HF export keeps exact GELU)")
    if arch is not GPT2 and config.bias:
        raise ValueError(f"llama.cpp's {arch.model_type} has no biases; this run has model.bias=True. Train with "
                         "--bias=false to export it to GGUF")
    return LLAMA_CPP_ARCH[arch.model_type]


def pre_tokenizer(tok) -> str:
    """The llama.cpp name of a byte-level BPE tokenizer's split: the one whose regex splits PROBE as the tokenizer's
    pattern does. Example: GPT-2's tokenizer -> "gpt-2"; cl100k's or a gptkit BPE with the gpt4 pattern -> "llama-bpe"
    """
    import regex

    from gptkit.tokenizer.byte_level import Tokenizer

    if not isinstance(tok, Tokenizer):
        raise ValueError(f"llama.cpp reads byte-level BPE tokenizers; this run's is a {type(tok).__name__}. Train with "
                         "a BPE (-t gpt2, cl100k_base or `gptkit tokenizer train`) to export it to GGUF")
    if tok.pattern is None:
        raise ValueError("this tokenizer splits no text before BPE (pattern none); llama.cpp always splits: retrain it "
                         "with the gpt2 or gpt4 pattern to export it to GGUF")
    if getattr(tok, "normalizer", None):
        raise ValueError(f"this tokenizer normalizes text first ({tok.normalizer}); llama.cpp's BPE does not")
    ours = regex.findall(tok.pattern, PROBE)
    for name, pattern in PRE_TOKENIZERS.items():
        if regex.findall(pattern, PROBE) == ours:
            return name
    raise ValueError("this tokenizer's split pattern is none that llama.cpp knows by name (GPT-2's, Llama 3's = "
                     "GPT-4's, Qwen2's), so llama.cpp would tokenize differently; train with the gpt2 or gpt4 pattern")


def gguf_tensors(config: GPTConfig, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """gptkit weights -> llama.cpp's tensor names (float32), via the HF tables."""
    arch = arch_for(config)
    hf = tensors_to_hf(arch, config, tensors)
    out = {}
    if arch is GPT2:
        conv = {"attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        norms = {"ln_1": "attn_norm", "ln_2": "ffn_norm"}
        for name, w in hf.items():
            parts = name.split(".")
            if parts[0] == "lm_head":
                out["output.weight"] = w
            elif parts[1] in ("wte", "wpe"):
                out[{"wte": "token_embd", "wpe": "position_embd"}[parts[1]] + ".weight"] = w
            elif parts[1] == "ln_f":
                out[f"output_norm.{parts[2]}"] = w
            elif parts[3] in norms:
                out[f"blk.{parts[2]}.{norms[parts[3]]}.{parts[4]}"] = w
            else:  # HF's Conv1D keeps (in, out); llama.cpp wants (out, in) as a Linear does
                key, kind = f"{parts[3]}.{parts[4]}", parts[5]
                out[f"blk.{parts[2]}.{conv[key]}.{kind}"] = w.T if kind == "weight" else w
        out.setdefault("output.weight", out["token_embd.weight"])  # llama.cpp's GPT-2 wants the head written
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, w in hf.items():
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = w
        elif name == "model.norm.weight":
            out["output_norm.weight"] = w
        elif name == "lm_head.weight":
            out["output.weight"] = w
        else:
            parts = name.split(".")  # model.layers.{i}.{module...}.weight
            module = ".".join(parts[3:-1])
            if arch is LLAMA and module in ("self_attn.q_proj", "self_attn.k_proj"):
                heads = config.n_head if module.endswith("q_proj") else config.kv_heads
                w = _interleave_rotary(w, heads)
            out[f"blk.{parts[2]}.{names[module]}.{parts[-1]}"] = w
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _interleave_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """Each head's rows reordered from HF's rotary layout (dimension i paired with i + d/2) to llama.cpp's (2i with
    2i + 1), as llama.cpp's converter does for Llama. Example: a head of 4 rows [0 1 2 3] -> [0 2 1 3]"""
    rows = w.shape[0] // heads
    return w.reshape(heads, 2, rows // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: str | os.PathLike, config: GPTConfig, tensors: dict[str, np.ndarray], tok, fmt=None,
               dtype: str = "f32", name: str = "gptkit model") -> Path:
    """Write the model, its tokenizer and (with `fmt`, a gptkit.tokenizer.chat.ChatFormat) its chat template as one
    GGUF file at `path`, through a temp file renamed into place. Everything is checked before anything is written."""
    try:
        import gguf
    except ImportError:
        raise ValueError('GGUF export needs llama.cpp\'s writer: pip install "gptkit[gguf]"') from None
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    arch = check_exportable(config)
    pre = pre_tokenizer(tok)
    vocab = _vocab(tok, config.vocab_size, gguf)
    eos = end_of_generation(tok, fmt)
    weights = gguf_tensors(config, tensors)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        _metadata(writer, config, arch, name, dtype, gguf)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(vocab[0])
        writer.add_token_types(vocab[1])
        writer.add_token_merges(vocab[2])
        if tok.eot_token is not None:
            writer.add_bos_token_id(tok.eot_token)
        if eos is not None:
            writer.add_eos_token_id(eos)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        if fmt is not None:
            from gptkit.tokenizer.chat import CHATML_TEMPLATE

            writer.add_chat_template(fmt.template or CHATML_TEMPLATE)
        for tname, w in weights.items():
            _add_tensor(writer, tname, w, dtype, gguf)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def _metadata(writer, c: GPTConfig, arch: str, name: str, dtype: str, gguf) -> None:
    writer.add_name(name)
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layer)
    writer.add_feed_forward_length(c.hidden_size)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.kv_heads)
    if arch == "gpt2":
        writer.add_layer_norm_eps(c.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(c.norm_eps)
        writer.add_rope_freq_base(c.rope_theta)
        writer.add_rope_dimension_count(c.head_size)
        writer.add_key_length(c.head_size)
        writer.add_value_length(c.head_size)
    kinds = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(kinds[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _vocab(tok, vocab_size: int, gguf) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) as llama.cpp's BPE reads them: HF's byte-level text of each id (ids past the
    tokenizer's, padding, as unused tokens), special tokens as control tokens."""
    doc = tok.to_tokenizer_json()
    by_id = {i: t for t, i in doc["model"]["vocab"].items()}
    specials = set(tok.special_tokens.values())
    tokens, types = [], []
    for i in range(max(vocab_size, tok.vocab_size)):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [" ".join(m) if isinstance(m, list) else m for m in doc["model"]["merges"]]
    return tokens, types, merges


def _add_tensor(writer, name: str, w: np.ndarray, dtype: str, gguf) -> None:
    """A weight in the file's dtype: matrices converted, vectors (norms, biases) kept in f32."""
    if w.ndim < 2 or dtype == "f32":
        writer.add_tensor(name, w.astype(np.float32))
    elif dtype == "f16" or (dtype == "q8_0" and w.shape[-1] % 32):
        writer.add_tensor(name, w.astype(np.float16))
    else:
        kind = gguf.GGMLQuantizationType.BF16 if dtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quantize(w, kind), raw_dtype=kind)
