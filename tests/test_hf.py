"""HF GPT-2 folders into gptkit: logits and greedy ids equal transformers' own (a small random model, no download)."""

import json

import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.hf import gptkit_name, read_hf_gpt2
from gptkit.model import GPT
from gptkit.generate import generate
from gptkit.weights import from_pretrained

transformers = pytest.importorskip("transformers", reason="test dependency: pip install -e '.[dev]'")


def _hf_model(tmp_path, safe=True, **kw):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=48, n_layer=2, n_head=3,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kw)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF zeroes biases and LayerNorm shifts at init; random ones test the map better
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=safe)
    return hf


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_logits_and_greedy_ids_match_transformers(tmp_path, safe):
    hf = _hf_model(tmp_path, safe)
    ours = from_pretrained(tmp_path / "hf").eval()
    assert ours.num_params() == hf.num_parameters()
    idx = torch.randint(0, 101, (2, 20))
    with torch.no_grad():
        diff = (ours(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff < 1e-4
    _assert_same_greedy_ids(ours, hf, idx[:1, :5])


def _assert_same_greedy_ids(ours, hf, prompt, n=12):
    """gptkit's greedy generate (KV cache) == argmax decoding with transformers' own forward (generate() would add
    its generation_config)."""
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, hf(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert generate(ours, prompt[0].tolist(), n, temperature=0) == seq[0, prompt.shape[1]:].tolist()


def test_name_map_docstring_examples():
    assert gptkit_name("transformer.h.3.mlp.c_fc.weight") == "h.3.mlp.c_fc.weight"
    assert gptkit_name("transformer.h.0.attn.bias") is None
    assert gptkit_name("transformer.h.0.attn.c_attn.bias") == "h.0.attn.c_attn.bias"
    assert gptkit_name("lm_head.weight") == "lm_head.weight"


def test_not_a_gpt2_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_hf_gpt2(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        read_hf_gpt2(tmp_path / "empty")
    _hf_model(tmp_path)
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="neither model.safetensors nor pytorch_model.bin"):
        read_hf_gpt2(tmp_path / "hf")


def test_wrong_shapes_name_the_tensor(tmp_path):
    _hf_model(tmp_path)
    doc = json.loads((tmp_path / "hf" / "config.json").read_text())
    doc["n_positions"] = 64
    (tmp_path / "hf" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="wpe.weight has shape"):
        from_pretrained(tmp_path / "hf")


def test_unsupported_activation(tmp_path):
    _hf_model(tmp_path, activation_function="relu")
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        read_hf_gpt2(tmp_path / "hf")


def test_export_round_trip_through_transformers(tmp_path):
    from gptkit.config import GPTConfig
    from gptkit.hf import write_hf_gpt2
    from gptkit.weights import model_tensors

    torch.manual_seed(1)
    ours = GPT(GPTConfig(vocab_size=101, block_size=32, n_layer=2, n_head=3, n_embd=48, pad_vocab_to=64)).eval()
    write_hf_gpt2(ours.config, model_tensors(ours), tmp_path / "out")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    idx = torch.randint(0, 101, (2, 16))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    _assert_same_greedy_ids(ours, hf, idx[:1, :4])
    back = from_pretrained(tmp_path / "out")
    assert back.wte.weight.shape[0] == 101  # the padding rows never leave gptkit


def test_export_cli(tmp_path, capsys):
    from gptkit.cli import main

    run = tmp_path / "run"
    assert main(["train", "shakespeare_char_gpt2", "--n_layer=1", "--n_head=2", "--n_embd=32", "--max_iters=2",
                 "--eval_interval=2", "--eval_iters=1", "--progress=false", "--bias=true", f"--out_dir={run}"]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "hf")]) == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    assert hf.config.vocab_size == 65 and hf.config.activation_function == "gelu"
    assert main(["export", str(run / "nope"), "-o", str(tmp_path / "x")]) == 1
    assert main(["train", "shakespeare_char_gpt2", "--n_layer=1", "--max_iters=1", "--eval_interval=1",
                 "--eval_iters=1", "--progress=false", f"--out_dir={tmp_path / 'nb'}"]) == 0
    assert main(["export", str(tmp_path / "nb"), "-o", str(tmp_path / "y")]) == 1
    assert "bias=False" in capsys.readouterr().err
    assert main(["train", "--n_layer=1", "--max_iters=1", "--eval_interval=1", "--eval_iters=1", "--progress=false",
                 "--bias=true", f"--out_dir={tmp_path / 'modern'}"]) == 0  # the default preset: rotary, Muon, ...
    assert main(["export", str(tmp_path / "modern"), "-o", str(tmp_path / "z")]) == 1
    assert "no equivalent of model.pos='rope'" in capsys.readouterr().err and not (tmp_path / "z").exists()


# Parameter counts of OpenAI's four GPT-2 sizes as transformers counts them (GPT2LMHeadModel.num_parameters(),
# lm_head tied to wte): 124,439,808 / 354,823,168 / 774,030,080 / 1,557,611,200.
HF_COUNTS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


@pytest.mark.parametrize("preset", list(HF_COUNTS))
def test_param_counts_of_the_four_presets_equal_transformers(preset):
    from gptkit.config import GPTConfig
    from gptkit.hf import config_to_hf

    config = GPTConfig.from_preset(preset)
    with torch.device("meta"):  # shapes only: gpt2-xl would take 6 GB of real memory
        ours = GPT(config).num_params()
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(config))).num_parameters()
    assert ours == theirs == HF_COUNTS[preset]


def test_a_folder_of_another_vocabulary_loads_but_has_no_tokenizer(tmp_path):
    from gptkit.weights import load_model

    _hf_model(tmp_path)
    model, src = load_model(tmp_path / "hf")  # the weights are fine: a model needs no tokenizer
    assert model.config.vocab_size == 101
    with pytest.raises(ValueError, match="vocab_size 101 and no tokenizer gptkit reads"):
        src.load_tokenizer()  # sample, eval and --init_from need one


@pytest.mark.parametrize("option", [dict(pos="rope"), dict(norm="rmsnorm"), dict(qk_norm=True),
                                    dict(mlp="relu2"), dict(n_kv_head=1), dict(logit_softcap=15.0)])
def test_options_gpt2_has_no_place_for_are_refused_naming_the_field(tmp_path, option):
    from gptkit.hf import write_hf_gpt2
    from gptkit.weights import model_tensors

    config = GPTConfig(vocab_size=101, block_size=32, n_layer=1, n_head=2, n_embd=16, **option)
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"no equivalent of model.{name}="):
        write_hf_gpt2(config, model_tensors(GPT(config)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_epsilon_and_mlp_width_travel_both_ways(tmp_path):
    from gptkit.hf import write_hf_gpt2
    from gptkit.weights import model_tensors

    config = GPTConfig(vocab_size=101, block_size=32, n_layer=1, n_head=2, n_embd=16, norm_eps=1e-6, mlp_hidden=48)
    model = GPT(config).eval()
    write_hf_gpt2(config, model_tensors(model), tmp_path / "out")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    back = from_pretrained(tmp_path / "out")
    assert (back.config.norm_eps, back.config.hidden_size) == (1e-6, 48)
    idx = torch.randint(0, 101, (1, 10))
    with torch.no_grad():
        assert (hf(idx).logits - model(idx)[0]).abs().max() < 1e-5
