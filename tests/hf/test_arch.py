"""HF folders into gptkit and back: for GPT-2, Llama and Qwen3, a small random model built and saved by `transformers`
itself (no download) gives the same logits (atol 1e-4, fp32) and the same greedy ids in gptkit; gptkit models
exported give the same logits in transformers; what has no exact equivalent is refused with one line."""

import json

import numpy as np
import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.hf.arch import ARCHS, arch_for, config_to_hf, read_hf, write_hf
from gptkit.torch.generate import generate
from gptkit.torch.model import GPT
from gptkit.torch.weights import from_pretrained, model_tensors

transformers = pytest.importorskip("transformers", reason="test dependency: pip install -e '.[dev]'")

V = 101
# Each architecture's small config, with the details that a wrong map would get wrong: grouped-query attention,
# a head width other than n_embd / n_head (Qwen3), an untied head, a non-default theta and epsilon.
HF_CONFIGS = {
    "gpt2": lambda **kw: transformers.GPT2Config(**{**dict(vocab_size=V, n_positions=32, n_embd=48, n_layer=2,
                                                          n_head=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
                                                     **kw}),
    "llama": lambda **kw: transformers.LlamaConfig(**{**dict(
        vocab_size=V, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500000.0,
        tie_word_embeddings=False), **kw}),
    "qwen3": lambda **kw: transformers.Qwen3Config(**{**dict(
        vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
        rope_theta=1000000.0), **kw}),
}
HF_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def hf_model(folder, arch="gpt2", save=True, **kw):
    """A random transformers model, every weight perturbed (HF inits biases to 0 and norm scales to 1, which would
    hide a swapped or dropped tensor), saved to folder (kw "max_shard_size", "safe_serialization" go to save)."""
    save_kw = {k: kw.pop(k) for k in ("max_shard_size", "safe_serialization") if k in kw}
    torch.manual_seed(0)
    hf = getattr(transformers, HF_CLASSES[arch])(HF_CONFIGS[arch](**kw)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if save:
        hf.save_pretrained(folder, **save_kw)
    return hf


def assert_same_greedy_ids(ours, hf, prompt, n=12):
    """gptkit's greedy generate (KV cache) == argmax decoding with transformers' own forward (generate() would add
    its generation_config)."""
    seq = prompt
    with torch.no_grad():
        for _ in range(n):
            seq = torch.cat([seq, hf(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert generate(ours, prompt[0].tolist(), n, temperature=0) == seq[0, prompt.shape[1]:].tolist()


def assert_same_model(ours, hf, T=20):
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(idx).logits
        assert theirs.abs().max() > 0.1  # the comparison below compares something
        assert (ours(idx)[0] - theirs).abs().max().item() < 1e-4
    assert_same_greedy_ids(ours, hf, idx[:1, :5])


IMPORTS = {  # id: (arch, hf_model kwargs)
    "gpt2": ("gpt2", {}),
    "gpt2-bin": ("gpt2", {"safe_serialization": False}),
    "gpt2-exact-gelu-untied": ("gpt2", {"activation_function": "gelu", "tie_word_embeddings": False}),
    "llama-gqa-untied": ("llama", {}),
    "llama-tied-mha-bias": ("llama", {"tie_word_embeddings": True, "num_key_value_heads": 6, "attention_bias": True,
                                      "mlp_bias": True}),
    "llama-sharded": ("llama", {"max_shard_size": "20KB"}),
    "qwen3-head-dim-tied": ("qwen3", {}),
    "qwen3-untied-sharded": ("qwen3", {"tie_word_embeddings": False, "max_shard_size": "20KB"}),
}


@pytest.mark.parametrize("case", list(IMPORTS))
def test_hf_folders_load_with_transformers_logits_and_greedy_ids(tmp_path, case):
    arch, kw = IMPORTS[case]
    hf = hf_model(tmp_path / "hf", arch, **kw)
    if "max_shard_size" in kw:
        assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    ours = from_pretrained(tmp_path / "hf")
    assert ours.num_params() == hf.num_parameters()
    assert_same_model(ours, hf)


def test_bfloat16_weights_are_read_exactly(tmp_path):
    """Released Llama / Qwen3 weights are bf16, which numpy has no dtype for: gptkit widens the bits itself."""
    hf = hf_model(tmp_path / "hf", "llama", save=False).to(torch.bfloat16)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    assert_same_model(ours, hf.float())


def test_configs_map_the_details(tmp_path):
    hf_model(tmp_path / "q", "qwen3")
    c, _ = read_hf(tmp_path / "q")
    assert (c.pos, c.norm, c.mlp, c.qk_norm, c.head_size, c.kv_heads, c.tie_weights, c.bias) == \
        ("rope", "rmsnorm", "swiglu", True, 16, 2, True, False)
    assert (c.rope_theta, c.norm_eps, c.block_size, c.hidden_size) == (1e6, 1e-6, 64, 64)
    hf_model(tmp_path / "l", "llama")
    c, _ = read_hf(tmp_path / "l")
    assert (c.qk_norm, c.head_dim, c.head_size, c.kv_heads, c.tie_weights, c.rope_theta, c.norm_eps) == \
        (False, 0, 8, 2, False, 5e5, 1e-5)


def test_transformers_4_config_keys_are_read(tmp_path):
    """transformers 4 wrote rope_theta at the top level and rope_scaling null; 5 writes rope_parameters."""
    hf = hf_model(tmp_path / "hf", "llama")
    doc = json.loads((tmp_path / "hf" / "config.json").read_text())
    del doc["rope_parameters"]
    doc.update(rope_theta=500000.0, rope_scaling=None)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(doc))
    assert read_hf(tmp_path / "hf")[0].rope_theta == 5e5
    assert_same_model(from_pretrained(tmp_path / "hf"), hf)
    ours = GPTConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=16, pos="rope", norm="rmsnorm", mlp="swiglu",
                     rope_theta=5e5)
    doc = config_to_hf(ours)
    assert doc["rope_theta"] == doc["rope_parameters"]["rope_theta"] == 5e5  # both generations read it


def test_a_gpt2_folder_of_gpt2s_vocabulary_keeps_gpt2s_tokenizer(tmp_path, tiny_gpt2_folder):
    """HF's gpt2 folders carry a tokenizer.json too; taken by name, data prepared with -t gpt2 fits it."""
    import shutil

    from gptkit.training.source import read_model_source

    shutil.copytree(tiny_gpt2_folder, tmp_path / "g")
    (tmp_path / "g" / "tokenizer.json").write_text("{}")
    assert read_model_source(tmp_path / "g").tokenizer["spec"] == "gpt2"


def _edit_config(folder, **changes):
    doc = json.loads((folder / "config.json").read_text())
    doc.update(changes)
    (folder / "config.json").write_text(json.dumps(doc))


REFUSED = [  # (arch, config.json changes, the line's words)
    ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "rope scaling 'llama3'"),
    ("llama", {"rope_parameters": None, "rope_theta": 1e4, "rope_scaling": {"type": "linear", "factor": 2.0}},
     "rope scaling 'linear'"),
    ("llama", {"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ("llama", {"attention_bias": True}, "attention_bias=True with mlp_bias=False"),
    ("qwen3", {"use_sliding_window": True, "sliding_window": 16}, "sliding-window attention"),
    ("qwen3", {"layer_types": ["sliding_attention", "full_attention"]}, "sliding-window attention"),
    ("qwen3", {"attention_bias": True}, "attention_bias=True"),
    ("llama", {"model_type": "mistral"}, "model_type 'mistral'; gptkit reads gpt2, llama, qwen3"),
    ("gpt2", {"activation_function": "relu"}, "activation_function 'relu'"),
    ("llama", {"num_hidden_layers": None}, "no 'num_hidden_layers'"),
]


@pytest.mark.parametrize("arch,changes,words", REFUSED, ids=[w.split("'")[0].strip() + "-" + a for a, _, w in REFUSED])
def test_what_gptkit_cannot_compute_is_refused_with_one_line(tmp_path, arch, changes, words):
    hf_model(tmp_path / "hf", arch)
    _edit_config(tmp_path / "hf", **changes)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("[", r"\[")):
        read_hf(tmp_path / "hf")


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_model(tmp_path / "hf", "qwen3")
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(path)
    del state["model.layers.1.self_attn.k_norm.weight"]
    save_file(state, path)
    with pytest.raises(ValueError, match=r"tensor model.layers.1.self_attn.k_norm.weight is missing"):
        read_hf(tmp_path / "hf")
    _edit_config(tmp_path / "hf", num_key_value_heads=4)
    with pytest.raises(ValueError, match=r"tensor model.layers.0.self_attn.k_proj.weight has shape \(32, 32\); "
                                         r"config.json implies \(64, 32\)"):
        read_hf(tmp_path / "hf")
    state["model.layers.1.self_attn.k_norm.weight"] = state["model.layers.0.self_attn.k_norm.weight"].clone()
    state["model.layers.9.mlp.up_proj.weight"] = state["model.layers.0.mlp.up_proj.weight"].clone()
    save_file(state, path)
    _edit_config(tmp_path / "hf", num_key_value_heads=2)
    with pytest.raises(ValueError, match="tensor model.layers.9.mlp.up_proj.weight has no place"):
        read_hf(tmp_path / "hf")


def test_bad_folders_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_hf(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        read_hf(tmp_path / "empty")
    hf_model(tmp_path / "hf", "llama")
    st = tmp_path / "hf" / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="not a readable safetensors file .truncated or corrupt.*ends at byte"):
        read_hf(tmp_path / "hf")
    st.write_bytes(data[:4])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_hf(tmp_path / "hf")
    st.unlink()
    with pytest.raises(ValueError, match="has no model.safetensors, model.safetensors.index.json or"):
        read_hf(tmp_path / "hf")
    hf_model(tmp_path / "sh", "llama", max_shard_size="20KB")
    shard = sorted((tmp_path / "sh").glob("model-0000*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ValueError, match=f"shard {shard.name}, named by model.safetensors.index.json, is missing"):
        read_hf(tmp_path / "sh")


def test_bf16_bit_helpers_docstring_examples():
    from gptkit.hf.tensors import bf16_to_f32, f32_to_bf16

    assert bf16_to_f32(np.array([0x3F80, 0xC000], np.uint16)).tolist() == [1.0, -2.0]
    assert f32_to_bf16(np.array([1.0, 1.00390625], np.float32)).tolist() == [0x3F80, 0x3F80]
    x = torch.randn(1000)  # round-to-nearest-even, as torch's own cast
    assert np.array_equal(f32_to_bf16(x.numpy()), x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))


def test_dims_docstring_example():
    from gptkit.hf.arch import dims

    d = dims(GPTConfig.from_preset("gpt2"))
    assert (d["C"], d["Q"], d["K"], d["A"], d["H"], d["V"]) == (768, 768, 768, 2304, 3072, 50257)


# -- export ---------------------------------------------------------------------------------------------------

SHAPES = {  # gptkit runs of each shape, and the HF class each exports as
    "gpt2": (dict(), "GPT2LMHeadModel"),
    "gpt2-bias-free-exact-gelu": (dict(bias=False, gelu="exact", tie_weights=False), "GPT2LMHeadModel"),
    "llama": (dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=1, rope_theta=5e5),
              "LlamaForCausalLM"),
    "llama-bias-tied": (dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=True, tie_weights=True), "LlamaForCausalLM"),
    "qwen3": (dict(pos="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, bias=False, head_dim=12, norm_eps=1e-6),
              "Qwen3ForCausalLM"),
}


def _perturbed(config: GPTConfig) -> GPT:
    torch.manual_seed(1)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("shape", list(SHAPES))
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, shape):
    options, cls = SHAPES[shape]
    ours = _perturbed(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32, pad_vocab_to=64,
                                **options))
    assert write_hf(ours.config, model_tensors(ours), tmp_path / "out") == cls
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == cls
    assert_same_model(ours, hf, T=16)
    back = from_pretrained(tmp_path / "out")
    assert back.wte.weight.shape[0] == V  # the padding rows never leave gptkit
    assert_same_model(back, hf, T=16)


def test_export_in_bfloat16(tmp_path):
    ours = _perturbed(GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=32, **SHAPES["llama"][0]))
    write_hf(ours.config, model_tensors(ours), tmp_path / "out", dtype="bfloat16")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert hf.dtype == torch.bfloat16
    want = ours.state_dict()["h.0.mlp.c_gate.weight"].to(torch.bfloat16)
    assert torch.equal(hf.model.layers[0].mlp.gate_proj.weight, want)


REFUSED_OUT = [  # (options, the line's words)
    (dict(mlp="relu2"), "model.mlp='relu2'"),
    (dict(pos="rope", norm="rmsnorm", mlp="relu2"), "model.mlp='relu2'"),
    (dict(logit_softcap=15.0), "model.logit_softcap=15.0"),
    (dict(pos="rope"), "model.pos='rope' with model.norm='layernorm', model.mlp='gelu'"),
    (dict(norm="rmsnorm"), "model.norm='rmsnorm'"),
    (dict(qk_norm=True), "model.qk_norm=True"),
    (dict(n_kv_head=1), "model.n_kv_head=1"),
    (dict(head_dim=16), "model.head_dim=16"),
    (dict(pos="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, bias=True), "HF Qwen3 has no MLP biases"),
]


@pytest.mark.parametrize("options,words", REFUSED_OUT, ids=[w for _, w in REFUSED_OUT])
def test_options_no_hf_architecture_has_are_refused_naming_them(tmp_path, options, words):
    config = GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16, **options)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        write_hf(config, model_tensors(GPT(config)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bigram_is_refused():
    with pytest.raises(ValueError, match="model.arch='bigram' has no HF architecture"):
        arch_for(GPTConfig.from_preset("bigram"))


def test_epsilon_and_mlp_width_travel_both_ways(tmp_path):
    config = GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16, norm_eps=1e-6, mlp_hidden=48)
    model = GPT(config).eval()
    write_hf(config, model_tensors(model), tmp_path / "out")
    back = from_pretrained(tmp_path / "out")
    assert back.config == config  # GPT-2: the config survives a round trip unchanged


# Parameter counts of OpenAI's four GPT-2 sizes as transformers counts them (GPT2LMHeadModel.num_parameters(),
# lm_head tied to wte): 124,439,808 / 354,823,168 / 774,030,080 / 1,557,611,200.
HF_COUNTS = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


@pytest.mark.parametrize("preset", list(HF_COUNTS))
def test_param_counts_of_the_four_presets_equal_transformers(preset):
    config = GPTConfig.from_preset(preset)
    with torch.device("meta"):  # shapes only: gpt2-xl would take 6 GB of real memory
        ours = GPT(config).num_params()
        theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(config))).num_parameters()
    assert ours == theirs == HF_COUNTS[preset]


def test_a_folder_of_another_vocabulary_without_tokenizer_json_loads_but_has_no_tokenizer(tmp_path):
    from gptkit.torch.weights import load_model

    hf_model(tmp_path / "hf", "llama")
    model, src = load_model(tmp_path / "hf")  # the weights are fine: a model needs no tokenizer
    assert model.config.vocab_size == V
    with pytest.raises(ValueError, match="vocab_size 101 and no tokenizer gptkit reads; give it a tokenizer.json"):
        src.load_tokenizer()  # sample, eval and --init_from need one


def test_every_arch_table_names_each_hf_tensor_once():
    for arch in ARCHS.values():
        names = [n for t in arch.tensors for n in t.hf]
        assert len(names) == len(set(names)), arch.model_type


# -- HF folders through the CLI: sample, eval, --init_from, and bad input --------------------------------------


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, shakespeare):
    """A random Llama of vocabulary 300 with a byte-level BPE tokenizer.json trained by HF tokenizers (GPT-4 split),
    as a downloaded SmolLM-like folder is, and a data dir prepared with that tokenizer.json."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

    from gptkit.cli import main

    root = tmp_path_factory.mktemp("llama")
    tok = __import__("tokenizers").Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++"""
                                   r"""[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([shakespeare[:200_000]], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf = hf_model(root / "hf", "llama", vocab_size=300)
    tok.save(str(root / "hf" / "tokenizer.json"))
    (root / "text.txt").write_text(shakespeare[:50_000])
    assert main(["prepare", str(root / "text.txt"), "-t", str(root / "hf" / "tokenizer.json"), "-o",
                 str(root / "data"), "-q"]) == 0
    return root, hf, tok


def test_cli_samples_evaluates_and_finetunes_a_llama_folder(llama_folder, capsys, tmp_path):
    from gptkit.cli import main

    root, hf, tok = llama_folder
    prompt = "ROMEO: what"
    ids = torch.tensor([tok.encode(prompt).ids])
    with torch.no_grad():
        for _ in range(16):
            ids = torch.cat([ids, hf(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    want = prompt + tok.decode(ids[0, len(tok.encode(prompt).ids):].tolist()) + "\n"
    assert main(["sample", str(root / "hf"), "--prompt", prompt, "--max-new-tokens", "16", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == want  # HF's greedy continuation, decoded by HF's tokenizer
    assert main(["eval", str(root / "hf"), "--data", str(root / "data")]) == 0
    assert "val: loss" in capsys.readouterr().out
    assert main(["train", "shakespeare_char", "--init_from", str(root / "hf"), f"--data={root / 'data'}",
                 "--block_size=32", "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--batch_size=2",
                 "--sample_tokens=0", "--progress=false", "--optimizer=adamw", "--peak_flops=1e12",
                 f"--out_dir={tmp_path / 'ft'}"]) == 0


# Zephyr's chat format (its model card's), written here: role tags as plain text, each turn closed by the eos token.
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + "
          "eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}"
          "\n{% endfor %}")


def test_a_folders_own_chat_template_prepares_finetunes_and_stays_with_the_run(llama_folder, tmp_path, capsys,
                                                                               monkeypatch):
    from gptkit.cli import main
    from gptkit.training.source import source_chat_format

    root = llama_folder[0]
    folder = tmp_path / "zephyr-like"
    folder.mkdir()
    for f in (root / "hf").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": ZEPHYR, "eos_token": "<|endoftext|>"}))
    rows = [[{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": f"{w}!"}]
            for w in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    assert main(["prepare", "--chat", str(tmp_path / "c.jsonl"), "-t", str(folder), "-o", str(tmp_path / "d")]) == 0
    assert f"for val, the chat template of {folder}, vocab 300" in capsys.readouterr().out  # no token added
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    want = [i for r in rows[:9] for i in hf_tok.apply_chat_template(r, tokenize=True, return_dict=False)]
    assert np.fromfile(tmp_path / "d" / "train.bin", dtype=np.uint16).tolist() == want
    mask = np.fromfile(tmp_path / "d" / "train.mask", dtype=np.uint8)
    eos = hf_tok.convert_tokens_to_ids("<|endoftext|>")
    assert hf_tok.decode([i for i, m in zip(want, mask) if m]) == "".join(f"{r[1]['content']}<|endoftext|>"
                                                                          for r in rows[:9])
    assert want.count(eos) == 18 and sum(mask[np.array(want) == eos]) == 9  # the user's eos is not the reply's
    assert main(["train", "shakespeare_char", "--init_from", str(folder), f"--data={tmp_path / 'd'}",
                 "--block_size=32", "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--batch_size=2",
                 "--sample_tokens=0", "--progress=false", "--optimizer=adamw", f"--out_dir={tmp_path / 'ft'}"]) == 0
    assert source_chat_format(folder) == source_chat_format(tmp_path / "ft")  # the run speaks its folder's format
    assert source_chat_format(folder).template == ZEPHYR and source_chat_format(root / "hf") is None
    # gptkit chat on the folder itself: transformers' greedy reply to the same conversation in the same template
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("Say one.\n"))
    capsys.readouterr()
    assert main(["chat", str(folder), "--temperature", "0", "--max-new-tokens", "12"]) == 0
    ids = hf_tok.apply_chat_template([{"role": "user", "content": "Say one."}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    out = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    assert capsys.readouterr().out == hf_tok.decode(out[0, len(ids):], skip_special_tokens=True) + "\n"


def test_mlx_samples_a_qwen3_folder_as_torch_does(tmp_path, capsys, llama_folder):
    pytest.importorskip("mlx.core", reason="the MLX backend is optional: pip install 'gptkit[mlx]'")
    from gptkit.cli import main

    hf_model(tmp_path / "q", "qwen3", vocab_size=300)
    (tmp_path / "q" / "tokenizer.json").write_text((llama_folder[0] / "hf" / "tokenizer.json").read_text())
    outs = []
    for backend in ("torch", "mlx"):
        assert main(["sample", str(tmp_path / "q"), "--prompt", "To be", "--max-new-tokens", "12", "--temperature",
                     "0", "--backend", backend]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and len(outs[0]) > len("To be\n")


def _break(folder, how):
    from safetensors.torch import load_file, save_file

    st = folder / "model.safetensors"
    if how == "no-config":
        (folder / "config.json").unlink()
    elif how == "unknown-model-type":
        _edit_config(folder, model_type="mamba")
    elif how == "missing-tensor":
        state = load_file(st)
        del state["model.layers.0.mlp.down_proj.weight"]
        save_file(state, st)
    elif how == "misshaped-tensor":
        state = load_file(st)
        state["model.norm.weight"] = torch.ones(7)
        save_file(state, st)
    elif how == "truncated":
        st.write_bytes(st.read_bytes()[:1000])
    elif how == "unigram-tokenizer":
        from tokenizers import Tokenizer, models

        Tokenizer(models.Unigram([("a", -1.0)])).save(str(folder / "tokenizer.json"))


BAD = {"no-config": "is not a gptkit run dir nor a HF model folder (no config.json)",
       "unknown-model-type": "model_type 'mamba'; gptkit reads gpt2, llama, qwen3",
       "missing-tensor": "tensor model.layers.0.mlp.down_proj.weight is missing",
       "misshaped-tensor": r"tensor model.norm.weight has shape \(7,\); config.json implies \(48,\)",
       "truncated": "not a readable safetensors file (truncated or corrupt?)",
       "unigram-tokenizer": "model type 'Unigram'"}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_folders_are_one_error_line_and_a_nonzero_exit(tmp_path, capsys, llama_folder, how):
    import re
    import shutil

    from gptkit.cli import main

    folder = tmp_path / "hf"
    shutil.copytree(llama_folder[0] / "hf", folder)
    _break(folder, how)
    assert main(["sample", str(folder), "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gptkit: error: ") and err.count("\n") == 1
    assert re.search(BAD[how] if "\\" in BAD[how] else re.escape(BAD[how]), err), err
