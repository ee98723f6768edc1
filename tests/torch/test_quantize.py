"""Weight-only int8 decoding (`--quantize int8`, gptkit.torch.quantize): the error bound of one layer, the quality of
trained runs (val loss within 1% of fp32, greedy text), and the commands' refusals."""

import copy

import numpy as np
import pytest
import torch

from gptkit.cli import main
from gptkit.config import TrainConfig
from gptkit.torch.evaluate import split_loss
from gptkit.torch.generate import generate
from gptkit.torch.quantize import Int8Linear, quantize
from gptkit.torch.weights import load_model
from gptkit.training.setup import resolve_data

BF16_EPS = 2.0**-8  # bf16 keeps 8 significant bits: a rounding error of at most 2^-8 relative


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 5, 200])  # the kernel's rows, and a prefill's (dequantised, fp32)
def test_int8_linear_error_is_within_its_bound(rows, dtype):
    """Per-row symmetric int8: each weight within scale/2 of its value (round to nearest), so each output is within
    sum_j |x_j| scale_i / 2 of fp32's; bf16 activations (the CPU kernel's, and a bf16 model's), and the output
    rounded to bf16, add at most 2^-8 of sum_j |x_j w_ij| and of |y_i|."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(768, 3072)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3072, 768, generator=g) * 0.02)
    x = torch.randn(rows, 768, generator=g).to(dtype).float()  # the input as the layer gets it
    q = Int8Linear(lin)
    want, got = lin(x).detach(), q(x.to(dtype)).float()
    assert q(x.to(dtype)).dtype == dtype
    bound = x.abs() @ (q.scale[:, None] / 2).expand(-1, 768).T
    if rows <= 64 or dtype == torch.bfloat16:
        bound = bound + BF16_EPS * (x.abs() @ lin.weight.detach().abs().T + want.abs())
    err = (got - want).abs()
    assert (err <= 1.01 * bound + 1e-5).all(), float((err / bound).max())
    assert float(err.max()) > 0  # it is quantized: not fp32's numbers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two short char runs: the default preset's model (rope, RMSNorm, ReLU^2, Muon) and GPT-2's architecture."""
    root = tmp_path_factory.mktemp("int8")
    fast = ["--max_iters=150", "--eval_interval=150", "--eval_iters=2", "--progress=false", "--sample_tokens=0"]
    assert main(["train", *fast, f"--out_dir={root / 'default'}"]) == 0
    assert main(["train", "shakespeare_char_gpt2", *fast, f"--out_dir={root / 'gpt2'}"]) == 0
    return root


@pytest.mark.parametrize("run", ["default", "gpt2"])
def test_int8_keeps_val_loss_within_one_percent_and_most_greedy_text(trained, run):
    model, _ = load_model(trained / run)
    q = quantize(copy.deepcopy(model))
    data = resolve_data(TrainConfig(data="shakespeare_char"))
    fp32, int8 = (split_loss(m, data, "val", max_tokens=20_000)["loss"] for m in (model, q))
    assert abs(int8 - fp32) / fp32 < 0.01, (fp32, int8)
    val = np.fromfile(data / "val.bin", dtype=np.uint16).astype(int)
    starts = np.random.default_rng(0).integers(0, len(val) - 64, size=30)
    same = [generate(model, val[s : s + 32].tolist(), 32, temperature=0) ==
            generate(q, val[s : s + 32].tolist(), 32, temperature=0) for s in starts]
    print(f"{run}: val {fp32:.4f} -> {int8:.4f}; greedy 32 tokens equal on {sum(same)} of {len(same)} prompts")
    assert sum(same) >= len(same) // 2  # a 150-step model: near ties flip (the full default run: 42 of 50)


def test_quantize_swaps_every_linear_and_moves_with_the_model(trained):
    model, _ = load_model(trained / "gpt2")
    q = quantize(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    kinds = {type(m).__name__ for m in q.modules()}
    assert "Int8Linear" in kinds and q.lm_head.weight.dtype == torch.int8 and q.wte.weight.dtype == torch.float32
    assert q.to("cpu").lm_head.scale.dtype == torch.float32  # buffers: .to() takes them along


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_sample_with_int8(trained, capsys, backend):
    args = ["sample", str(trained / "default"), "--temperature", "0", "--max-new-tokens", "30", "--prompt", "ROMEO:",
            "--backend", backend]
    assert main([*args, "--quantize", "int8"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) > 30


def test_int8_refusals_are_one_line(trained, chat_run, capsys):
    run = str(trained / "default")
    assert main(["sample", run, "--quantize", "int8", "--compile", "yes", "--device", "cpu"]) == 1
    assert capsys.readouterr().err == ("gptkit: error: --quantize int8 runs torch's int8 kernel eagerly on a CPU; drop "
                                       "--compile yes\n")
    assert main(["chat", str(chat_run), "--quantize", "int8"]) == 1  # n_embd 32
    assert capsys.readouterr().err == ("gptkit: error: --quantize int8: this model's linear layers hold 14,432 "
                                       "weights, fewer than 65,536: decoding it is not bound by reading them, so int8 "
                                       "has nothing to gain; drop --quantize\n")
    assert main(["serve", "--quantize", "int8", "--compile", "yes", "--device", "cpu"]) == 1
    assert "drop --compile yes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sample", run, "--quantize", "int4"])
    assert e.value.code == 2 and "argument --quantize: invalid choice: 'int4' (choose from 'int8')" in \
        capsys.readouterr().err
