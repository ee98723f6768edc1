"""`gptkit export MODEL --format gguf` (issue 27), checked by llama.cpp itself through llama-cpp-python: for gptkit
runs of the three shapes llama.cpp runs (Llama, Qwen3, GPT-2) and for random HF-imported folders of each, llama.cpp's
greedy decoding gives gptkit's first 32 tokens (f32 and f16 files); its tokenizer gives gptkit's ids on 500+ texts
(spaces, digits, punctuation, non-Latin scripts, special tokens) for trained BPEs with GPT-4's and Qwen2's splits and
for GPT-2's own vocabulary; a chat run's template, applied by llama.cpp, gives gptkit's ids; a q8_0 file's log-likelihood is
within 1% of the f32 file's; what llama.cpp cannot run is refused by name, with nothing written.

Skipped, with the reason, where llama-cpp-python is not installed (it is built from source, minutes); CI installs it
(.ci/run) and sets GPTKIT_REQUIRE_LLAMA_CPP=1, which turns a missing one into a failure.
"""

import ctypes
import json
import os

import numpy as np
import pytest

if os.environ.get("GPTKIT_REQUIRE_LLAMA_CPP") == "1":
    import gguf  # noqa: F401 (CI: missing, they fail rather than skip)
    import llama_cpp  # noqa: F401
llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp's binding is built from source: pip install "
                                "llama-cpp-python (.ci/run does)")
pytest.importorskip("gguf", reason='the GGUF writer is optional: pip install "gptkit[gguf]"')

from gptkit.cli import main  # noqa: E402
from gptkit.tokenizer.byte_level import Tokenizer  # noqa: E402
from gptkit.tokenizer.chat import CHATML_TEMPLATE, ChatFormat, encode_chat  # noqa: E402

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=64", "--batch_size=8", "--eval_iters=1",
        "--sample_tokens=0", "--progress=false", "--peak_flops=1e12"]
SHAPES = {  # (preset, overrides): the three llama.cpp architectures
    "llama": ("shakespeare_char", ["--qk_norm=false", "--mlp=swiglu", "--n_kv_head=1", "--optimizer=adamw"]),
    "qwen3": ("shakespeare_char", ["--mlp=swiglu", "--tie_weights=false"]),
    "gpt2": ("shakespeare_char_gpt2", ["--bias=true", "--gelu=tanh"]),
}
PROMPT = "ROMEO: what light"


@pytest.fixture(scope="module")
def bpe(bpe_root):
    """A byte-level BPE trained here (GPT-4's split, <|endoftext|>) and tiny Shakespeare prepared with it."""
    return bpe_root


@pytest.fixture(scope="module")
def runs(bpe):
    """A run of each shape, 60 steps on the BPE data."""
    out = {}
    for name, (preset, over) in SHAPES.items():
        out[name] = bpe / "runs" / name
        assert main(["train", preset, *TINY, *over, "--max_iters=60", "--eval_interval=60", f"--data={bpe / 'data'}",
                     f"--out_dir={out[name]}"]) == 0
    return out


def _llm(path, n_ctx=64):
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False)


def _llama_greedy(llm, ids, n=32):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def _gptkit_greedy(spec, ids, n=32):
    from gptkit.generate.engine import Request, generate_ids
    from gptkit.torch.generate import Engine
    from gptkit.torch.weights import load_model

    model, _ = load_model(spec, "last", "cpu")
    return generate_ids(Engine(model, 1), [Request(tuple(ids), n, 0.0)])[0]


def _export(spec, out, *flags):
    assert main(["export", str(spec), "--format", "gguf", "-o", str(out), *flags]) == 0
    return out


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_llama_cpp_decodes_a_run_as_gptkit_does(runs, bpe, tmp_path, shape, dtype):
    path = _export(runs[shape], tmp_path / "model.gguf", "--dtype", dtype)
    llm = _llm(path)
    tok = Tokenizer.load(bpe / "tok.model")
    ids = tok.encode(PROMPT)
    assert llm.tokenize(PROMPT.encode(), add_bos=False, special=True) == ids
    assert _llama_greedy(llm, ids) == _gptkit_greedy(runs[shape], ids)
    assert llm.metadata["general.architecture"] == shape and llm.metadata["tokenizer.ggml.pre"] == "llama-bpe"
    modelfile = (tmp_path / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and 'TEMPLATE "{{ .Prompt }}"' in modelfile  # a base model completes


def _hf_folder(folder, arch, tok):
    """A random transformers model of `arch` (every weight perturbed) with `tok` as its tokenizer.json."""
    from tests.hf.test_arch import hf_model

    more = {"n_positions": 64} if arch == "gpt2" else {}  # room for the prompt and 32 tokens
    hf_model(folder, arch, vocab_size=tok.vocab_size, **more)
    (folder / "tokenizer.json").write_text(json.dumps(tok.to_tokenizer_json()))
    return folder


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_llama_cpp_decodes_an_hf_folder_as_gptkit_does(bpe, tmp_path, arch, dtype):
    tok = Tokenizer.load(bpe / "tok.model")
    _hf_folder(tmp_path / "hf", arch, tok)
    llm = _llm(_export(tmp_path / "hf", tmp_path / "m.gguf", "--dtype", dtype))
    ids = tok.encode(PROMPT)
    assert _llama_greedy(llm, ids) == _gptkit_greedy(tmp_path / "hf", ids)


def _texts(data_dir) -> list[str]:
    """500+ texts: lines of three English texts, and made ones with digits, punctuation, whitespace runs, non-Latin
    scripts, emoji and special tokens."""
    texts = []
    for name in ("tinyshakespeare.txt", "the-verdict.txt", "taylorswift.txt"):
        lines = [ln for ln in (data_dir / name).read_text(encoding="utf-8").splitlines() if ln.strip()]
        texts += lines[:: max(1, len(lines) // 200)][:200]
    made = ["3.14159 and 1,000,000 and 0x1F", "  leading spaces", "trailing spaces   ", "tabs\tand\t\ttabs",
            "new\n\nlines\r\n", "I'M SHOUTING, you're not; they'll see", "Привет, мир!", "你好，世界。", "こんにちは",
            "안녕하세요", "مرحبا بالعالم", "שלום", "café naïve über", "🎉🚀 emoji ✓", "a<|endoftext|>b",
            "<|endoftext|><|endoftext|>", "x = f(y) + g[z] * {w}; // done", "email@example.com #tag $9.99 100%"]
    texts += made + [m + t for m in made for t in (" 1234567", "\n  \n", "  ")]
    assert len(texts) >= 500
    return texts


def test_llama_cpps_tokenizer_gives_gptkits_ids_on_500_texts(runs, bpe, tiny_gpt2_folder, gpt2_tok, data_dir, tmp_path,
                                                            shakespeare):
    from gptkit.hf.gguf import PRE_TOKENIZERS

    texts = _texts(data_dir)
    ours = Tokenizer.load(bpe / "tok.model")  # GPT-4's split: llama.cpp's llama-bpe
    qwen = Tokenizer.train(shakespeare[:50_000], vocab_size=300, pattern=PRE_TOKENIZERS["qwen2"],
                           special_tokens=["<|endoftext|>"], progress=False)  # Qwen2's split: single digits
    cases = ((ours, _export(runs["llama"], tmp_path / "a.gguf"), "llama-bpe"),
             (gpt2_tok, _export(tiny_gpt2_folder, tmp_path / "b.gguf", "--overwrite"), "gpt-2"),
             (qwen, _export(_hf_folder(tmp_path / "q", "llama", qwen), tmp_path / "c.gguf", "--overwrite"), "qwen2"))
    for tok, path, pre in cases:
        llm = _llm(path)
        assert llm.metadata["tokenizer.ggml.pre"] == pre
        wrong = [t for t in texts if llm.tokenize(t.encode(), add_bos=False, special=True)
                 != tok.encode(t, allowed_special="all")]
        assert wrong == [], f"{pre}: {len(wrong)} of {len(texts)} texts tokenized differently, e.g. {wrong[:3]!r}"


def _llama_cpp_chat(llm, messages, add_generation_prompt=True) -> str:
    """llama.cpp's own rendering of a conversation with the model's template (llama_chat_apply_template)."""
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    template = llm.metadata["tokenizer.chat_template"].encode()
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_chat_apply_template(template, chat, len(messages), add_generation_prompt, buf, len(buf))
    assert 0 < n < len(buf)
    return buf.raw[:n].decode()


def test_a_chat_run_carries_its_template_and_llama_cpp_formats_as_gptkit(runs, bpe, tmp_path, capsys, monkeypatch):
    import io
    import sys

    chat = tmp_path / "chat"
    llama_opts = [*TINY, *SHAPES["llama"][1], "--block_size=128"]
    assert main(["train", *llama_opts, "--max_iters=1", "--eval_interval=1", f"--data={bpe / 'data'}",
                 f"--out_dir={tmp_path / 'base'}"]) == 0
    assert main(["train", *llama_opts, "--max_iters=40", "--eval_interval=40", "--data=reverse",
                 f"--init_from={tmp_path / 'base'}", f"--out_dir={chat}"]) == 0
    path = _export(chat, tmp_path / "chat.gguf")
    llm = _llm(path, 128)
    tok = Tokenizer.load(chat / "tokenizer.model")
    assert llm.metadata["tokenizer.chat_template"] == CHATML_TEMPLATE
    assert int(llm.metadata["tokenizer.ggml.eos_token_id"]) == tok.special_tokens["<|im_end|>"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse: night"},
                {"role": "assistant", "content": "thgin"}, {"role": "user", "content": "Reverse: crown"}]
    text = _llama_cpp_chat(llm, messages)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == encode_chat(
        tok, ChatFormat.chatml(), messages, add_generation_prompt=True)[0]
    modelfile = (tmp_path / "Modelfile").read_text()
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    monkeypatch.setattr(sys, "stdin", io.StringIO("Reverse: night\n"))
    capsys.readouterr()
    assert main(["chat", str(chat), "--temperature", "0", "--max-new-tokens", "12"]) == 0
    reply = capsys.readouterr().out
    ids = encode_chat(tok, ChatFormat.chatml(), messages[1:2], add_generation_prompt=True)[0]
    out = _llama_greedy(llm, ids, 12)
    end = tok.special_tokens["<|im_end|>"]
    assert reply == tok.decode(out[: out.index(end)] if end in out else out) + "\n"  # gptkit chat's greedy reply


def _mean_nll(llm, ids) -> float:
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(
        1, keepdims=True)
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].mean())


def test_q8_0_keeps_the_log_likelihood_within_1_percent(runs, bpe, tmp_path):
    tok = Tokenizer.load(bpe / "tok.model")
    held_out = (bpe / "text.txt").read_text()[-20_000:]  # the val split's text
    windows = [tok.encode(held_out[k:k + 400])[:64] for k in range(0, 8000, 400)]
    for shape in SHAPES:
        f32 = _llm(_export(runs[shape], tmp_path / f"{shape}.gguf", "--overwrite"))
        q8 = _llm(_export(runs[shape], tmp_path / f"{shape}-q8.gguf", "--dtype", "q8_0", "--overwrite"))
        a = np.mean([_mean_nll(f32, w) for w in windows])
        b = np.mean([_mean_nll(q8, w) for w in windows])
        assert abs(b - a) / a < 0.01, (shape, a, b)


def test_what_llama_cpp_cannot_run_is_refused_and_nothing_written(runs, bpe, tmp_path, capsys):
    default = tmp_path / "default"  # ReLU^2 with QK-norm: no llama.cpp architecture
    assert main(["train", *TINY, "--max_iters=1", "--eval_interval=1", f"--out_dir={default}"]) == 0
    exact = tmp_path / "exact"  # GPT-2 with exact GELU: llama.cpp's is tanh
    assert main(["train", "shakespeare_char_gpt2", *TINY, "--max_iters=1", "--eval_interval=1",
                 f"--data={bpe / 'data'}", f"--out_dir={exact}"]) == 0
    char = tmp_path / "char"  # a Llama shape with a char tokenizer
    assert main(["train", *TINY, *SHAPES["llama"][1], "--max_iters=1", "--eval_interval=1", f"--out_dir={char}"]) == 0
    capsys.readouterr()
    for run, words in ((default, "mlp='relu2'"), (exact, "--gelu=tanh"), (char, "byte-level BPE")):
        assert main(["export", str(run), "--format", "gguf", "-o", str(tmp_path / "x.gguf")]) == 1
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "Modelfile").exists()
    (tmp_path / "notes.gguf").write_text("my notes")  # not an export: never replaced, even with --overwrite
    assert main(["export", str(runs["llama"]), "--format", "gguf", "-o", str(tmp_path / "notes.gguf"),
                 "--overwrite"]) == 1
    assert "not a gptkit export" in capsys.readouterr().err and (tmp_path / "notes.gguf").read_text() == "my notes"
