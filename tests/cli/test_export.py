"""`gptkit export RUN --format hf -o DIR` end to end: a gptkit run of each shape, trained a few steps, exported, loaded
by transformers (AutoModelForCausalLM + AutoTokenizer): the same logits (atol 1e-4) and, through
`pipeline("text-generation")`, the same greedy text as `gptkit sample RUN --temperature 0`; the folder reads back
into gptkit; what has no HF equivalent is refused with one line, and nothing is written."""

import json

import numpy as np
import pytest
import torch

from gptkit.cli import main
from gptkit.tokenizer.byte_level import Tokenizer

transformers = pytest.importorskip("transformers", reason="test dependency: pip install -e '.[dev]'")

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--max_iters=20",
        "--eval_interval=20", "--eval_iters=1", "--sample_tokens=0", "--progress=false", "--warmup_iters=2",
        "--peak_flops=1e12"]  # a stated peak: no CPU measurement
SHAPES = {  # (preset, overrides, data: "bpe" = a trained byte-level BPE, "char"), and the HF class
    "gpt2-default-style": (("shakespeare_char_gpt2", [], "bpe"), "GPT2LMHeadModel"),  # bias-free, exact GELU
    "gpt2-bias-tanh": (("shakespeare_char_gpt2", ["--bias=true", "--gelu=tanh"], "char"), "GPT2LMHeadModel"),
    "llama-gqa": (("shakespeare_char", ["--qk_norm=false", "--mlp=swiglu", "--n_kv_head=1", "--optimizer=adamw"],
                   "bpe"), "LlamaForCausalLM"),
    "qwen3": (("shakespeare_char", ["--mlp=swiglu", "--tie_weights=false"], "bpe"), "Qwen3ForCausalLM"),
    "qwen3-mlx": (("shakespeare_char", ["--mlp=swiglu", "--backend=mlx", "--optimizer=adamw"], "char"),
                  "Qwen3ForCausalLM"),
}
PROMPT = "ROMEO:"


@pytest.fixture(scope="module")
def bpe_data(bpe_root):
    """A data dir tokenized with a byte-level BPE trained here (GPT-4 split, <|endoftext|>)."""
    return bpe_root / "data"


def _train(tmp_path, bpe_data, preset, overrides, data):
    if "--backend=mlx" in overrides:
        pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    run = tmp_path / "run"
    data_arg = [f"--data={bpe_data}"] if data == "bpe" else []
    assert main(["train", preset, *TINY, *overrides, *data_arg, f"--out_dir={run}"]) == 0
    return run


@pytest.mark.parametrize("shape", list(SHAPES))
def test_exported_runs_give_transformers_the_same_logits_and_greedy_text(tmp_path, capsys, bpe_data, shape):
    (preset, overrides, data), cls = SHAPES[shape]
    run = _train(tmp_path, bpe_data, preset, overrides, data)
    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "-o", str(out)]) == 0
    assert f"({cls}:" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == cls
    tok = transformers.AutoTokenizer.from_pretrained(out)

    from gptkit.torch.weights import load_model

    ours, src = load_model(run)
    ids = src.load_tokenizer().encode("First Citizen:\nBefore we proceed any further, hear me speak.")[:32]
    assert tok(PROMPT + " hear me")["input_ids"] == src.load_tokenizer().encode(PROMPT + " hear me")
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (ours(x)[0] - hf(x).logits).abs().max().item() < 1e-4

    gen = transformers.pipeline("text-generation", model=str(out), tokenizer=tok)
    theirs = gen(PROMPT, max_new_tokens=24, do_sample=False)[0]["generated_text"]
    assert main(["sample", str(run), "--prompt", PROMPT, "--max-new-tokens", "24", "--temperature", "0"]) == 0
    sampled = capsys.readouterr().out
    assert sampled == theirs + "\n" and len(theirs) > len(PROMPT)

    assert main(["sample", str(out), "--prompt", PROMPT, "--max-new-tokens", "24", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == sampled  # and the HF folder samples the same in gptkit, tokenizer.json included


def test_mlx_and_torch_runs_of_the_same_weights_export_the_same_folder(tmp_path, bpe_data):
    """The checkpoint format is shared: a run's weights export to the same bytes whichever backend wrote them."""
    pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    from gptkit.hf.arch import write_hf
    from gptkit.mlx.model import build_model as mlx_model
    from gptkit.mlx.weights import load_weights as mlx_load
    from gptkit.mlx.weights import model_tensors as mlx_tensors
    from gptkit.torch.model import build_model
    from gptkit.torch.weights import load_weights, model_tensors
    from gptkit.training.run_dir import read_model_checkpoint

    run = _train(tmp_path, bpe_data, "shakespeare_char", ["--mlp=swiglu", "--backend=mlx", "--optimizer=adamw",
                                                          "--max_iters=3", "--eval_interval=3"], "bpe")
    config, tensors, _ = read_model_checkpoint(run, "last")
    torch_model, mlx_m = build_model(config), mlx_model(config)
    load_weights(torch_model, tensors)
    mlx_load(mlx_m, tensors)
    write_hf(config, model_tensors(torch_model), tmp_path / "a")
    write_hf(config, mlx_tensors(mlx_m), tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_export_dtype_and_refusals(tmp_path, capsys, bpe_data):
    run = _train(tmp_path, bpe_data, "shakespeare_char", ["--max_iters=2", "--eval_interval=2"], "char")  # relu2
    assert main(["export", str(run), "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "model.mlp='relu2'" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()
    assert main(["export", str(run / "nope"), "-o", str(tmp_path / "x")]) == 1
    assert main(["export", str(run), "-o", str(run)]) == 1
    assert "is a gptkit run dir" in capsys.readouterr().err

    run2 = tmp_path / "run2"
    assert main(["train", "shakespeare_char_gpt2", *TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={run2}"]) == 0
    assert main(["export", str(run2), "-o", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    doc = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert doc["dtype"] == "bfloat16" and doc["eos_token_id"] is None  # the char vocabulary has no <|endoftext|>
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    assert hf.dtype == torch.bfloat16
    assert main(["export", str(run2), "-o", str(tmp_path / "bf16")]) == 1  # not empty: --overwrite
    assert "pass --overwrite" in capsys.readouterr().err


def test_generation_config_names_endoftext(tmp_path, bpe_data):
    run = _train(tmp_path, bpe_data, "shakespeare_char_gpt2", ["--max_iters=2", "--eval_interval=2"], "bpe")
    assert main(["export", str(run), "-o", str(tmp_path / "hf")]) == 0
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    eot = Tokenizer.load(run / "tokenizer.model").eot_token
    assert gen["eos_token_id"] == eot == 320 - 1
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert (tok.eos_token, tok.eos_token_id) == ("<|endoftext|>", eot)
    assert np.array_equal(tok("a<|endoftext|>b")["input_ids"],
                          Tokenizer.load(run / "tokenizer.model").encode("a<|endoftext|>b", allowed_special="all"))


def test_a_chat_run_exports_its_template_and_transformers_chats_as_gptkit_does(tmp_path, capsys, monkeypatch):
    """Issue 25: the HF export of a chat run carries its ChatML template and <|im_end|> as eos, so
    AutoTokenizer.apply_chat_template gives gptkit's ids and pipeline("text-generation") given messages replies with
    `gptkit chat`'s greedy text."""
    import io
    import sys

    from gptkit.tokenizer.chat import ChatFormat, encode_chat
    from gptkit.tokenizer.load import load_tokenizer

    qwen3 = ["--mlp=swiglu", "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=128", "--eval_iters=1",
             "--sample_tokens=0", "--progress=false"]
    assert main(["train", *qwen3, "--max_iters=1", "--eval_interval=1", f"--out_dir={tmp_path / 'base'}"]) == 0
    assert main(["train", *qwen3, "--max_iters=20", "--eval_interval=20", "--data=reverse", "--lr=3e-3",
                 f"--init_from={tmp_path / 'base'}", f"--out_dir={tmp_path / 'chat'}"]) == 0
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "chat"), "--format", "hf", "-o", str(out)]) == 0
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and "<|im_start|>" in config["chat_template"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse: night"},
                {"role": "assistant", "content": "thgin"}, {"role": "user", "content": "Reverse: crown"}]
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    tok = load_tokenizer(tmp_path / "chat" / "tokenizer.model")
    for prompt in (False, True):
        want, _ = encode_chat(tok, ChatFormat.chatml(), messages, add_generation_prompt=prompt)
        assert hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt,
                                          return_dict=False) == want
    monkeypatch.setattr(sys, "stdin", io.StringIO("Reverse: night\n"))
    capsys.readouterr()
    assert main(["chat", str(tmp_path / "chat"), "--temperature", "0", "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out
    pipe = transformers.pipeline("text-generation", model=str(out), device="cpu")
    got = pipe([{"role": "user", "content": "Reverse: night"}], max_new_tokens=12, do_sample=False)
    assert printed == got[0]["generated_text"][-1]["content"] + "\n"
