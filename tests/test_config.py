"""Config: presets, typed overrides, and the errors a user sees for bad ones."""

import dataclasses

import pytest

from gptkit.config import (CONFIGS_DIR, MODEL_PRESETS, GPTConfig, RunConfig, TrainConfig, _coerce, load_run_config,
                           parse_overrides, unknown_field)


def test_defaults_are_gpt2_small():
    c = GPTConfig()
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (50257, 1024, 12, 12, 768)
    assert c.padded_vocab_size == 50257


def test_padded_vocab_docstring_example():
    assert GPTConfig(pad_vocab_to=64).padded_vocab_size == 50304  # build-nanogpt's "nice number"


@pytest.mark.parametrize("name,shape", [
    ("gpt2", (12, 12, 768)), ("gpt2-medium", (24, 16, 1024)), ("gpt2-large", (36, 20, 1280)), ("gpt2-xl", (48, 25, 1600)),
])
def test_gpt2_presets(name, shape):
    # Shapes from OpenAI's released hparams.json files (and nanoGPT's from_pretrained table).
    c = GPTConfig.from_preset(name)
    assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size) == (*shape, 50257, 1024)


def test_preset_overrides_and_frozen():
    c = GPTConfig.from_preset("char-small", dropout=0.0)
    assert (c.n_layer, c.n_embd, c.dropout) == (6, 384, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_layer = 3


@pytest.mark.parametrize("kwargs,match", [
    ({"n_embd": 100, "n_head": 3}, "divisible"), ({"dropout": 1.0}, "dropout"), ({"n_layer": 0}, "n_layer"),
    ({"arch": "rnn"}, "arch"), ({"gelu": "relu"}, "gelu"),
])
def test_bad_model_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="char-tiny"):
        GPTConfig.from_preset("gpt5")


@pytest.mark.parametrize("value,to,expected", [
    ("3e-4", float, 3e-4), ("2000", int, 2000), ("2e3", int, 2000), ("false", bool, False), ("On", bool, True),
    ("x", str, "x"), (3, float, 3.0), (4.0, int, 4),
])
def test_coerce(value, to, expected):
    got = _coerce(value, to, "k")
    assert got == expected and type(got) is to


@pytest.mark.parametrize("value,to", [("2.5", int), ("abc", float), ("maybe", bool), (True, int)])
def test_coerce_rejects(value, to):
    with pytest.raises(ValueError, match="k must be"):
        _coerce(value, to, "k")


def test_parse_overrides_bare_and_qualified():
    assert parse_overrides(["--n_layer=6", "--train.lr=3e-4", "--model.dropout=0.1", "--max-iters=5"]) == (
        {"n_layer": 6, "dropout": 0.1}, {"lr": 3e-4, "max_iters": 5})


@pytest.mark.parametrize("key,message", [
    ("n_layr", "unknown config field 'n_layr'; did you mean 'n_layer'?"),  # the docstring's examples
    ("train.n_layer", "unknown config field 'train.n_layer'; did you mean 'model.n_layer'?"),
    ("max-iter", "unknown config field 'max-iter'; did you mean 'max_iters'?"),
    ("zzz", "unknown config field 'zzz'"),
])
def test_unknown_field_names_the_closest(key, message):
    assert unknown_field(key) == message


@pytest.mark.parametrize("item,match", [
    ("--n_layr=6", "did you mean 'n_layer'"), ("n_layer=6", "--key=value"), ("--n_layer", "--key=value"),
    ("--train.n_layer=6", "unknown config field 'train.n_layer'"), ("--n_layer=six", "n_layer must be int"),
])
def test_bad_overrides(item, match):
    with pytest.raises(ValueError, match=match):
        parse_overrides([item])


def test_every_shipped_preset_loads():
    names = sorted(p.stem for p in CONFIGS_DIR.glob("*.toml"))
    assert "shakespeare_char" in names and "nanogpt_cpu" in names
    for name in names:
        cfg = load_run_config(name)
        assert cfg.name == name


def test_nanogpt_cpu_preset_matches_its_recipe():
    # nanoGPT README's CPU command on config/train_shakespeare_char.py
    cfg = load_run_config("nanogpt_cpu")
    m, t = cfg.model, cfg.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (t.batch_size, t.max_iters, t.lr_decay_iters, t.lr, t.min_lr, t.warmup_iters, t.beta2) == (
        12, 2000, 2000, 1e-3, 1e-4, 100, 0.99)


def test_toml_file_and_overrides(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[model]\npreset = "char-tiny"\nn_layer = 2\n[train]\nlr = 0.01\nmax_iters = 7\n')
    cfg = load_run_config(str(f), ["--max_iters=9", "--n_embd=64"])
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.train.lr, cfg.train.max_iters, cfg.name) == (2, 64, 0.01, 9, "mine")


@pytest.mark.parametrize("text,match", [
    ("[model]\nn_layer = 'two'\n", "n_layer must be int"), ("[optim]\nlr = 1\n", "unknown table"),
    ("[train\n", "not valid TOML"), ("[train]\nlr = -1.0\n", "lr"), ("[train]\nbatch_size = 0\n", "batch_size"),
])
def test_bad_toml(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_run_config(str(f))


def test_run_config_round_trip():
    cfg = RunConfig(GPTConfig.from_preset("char-tiny"), TrainConfig(lr=5e-4), name="x")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="not a gptkit run config"):
        RunConfig.from_dict({"model": {"n_layers": 3}, "train": {}})


def test_model_presets_all_valid():
    for name in MODEL_PRESETS:
        GPTConfig.from_preset(name)


def test_gpt2_124m_preset_is_build_nanogpts_recipe():
    # build-nanogpt train_gpt2.py: total_batch_size 524288, B=64, T=1024, max_lr 6e-4, min_lr = max_lr * 0.1,
    # warmup_steps 715, max_steps 19073, weight_decay 0.1, betas (0.9, 0.95), clip 1.0, vocab_size 50304
    from gptkit.training.setup import accumulation_steps

    cfg = load_run_config("gpt2_124m")
    m, t = cfg.model, cfg.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.padded_vocab_size, m.bias) == (12, 12, 768, 1024, 50304, True)
    assert (t.total_batch_tokens, t.batch_size, t.max_iters, t.warmup_iters) == (524288, 64, 19073, 715)
    assert (t.lr, t.min_lr, t.weight_decay, t.beta1, t.beta2, t.grad_clip) == (6e-4, 6e-5, 0.1, 0.9, 0.95, 1.0)
    assert (t.dtype, t.compile, t.loader) == ("bfloat16", True, "sequential")
    assert accumulation_steps(t, m.block_size, 1) == 8 and accumulation_steps(t, m.block_size, 8) == 1


def test_lr_alone_scales_min_lr_with_it():
    # the README's finetune example, `--lr=1e-4` on a preset whose min_lr is 6e-4, used to fail "min_lr <= lr"
    from gptkit.config import load_run_config

    preset = load_run_config("shakespeare_char")
    cfg = load_run_config("shakespeare_char", ["--lr=1e-4"])
    assert cfg.train.min_lr == pytest.approx(1e-4 * preset.train.min_lr / preset.train.lr)
    assert load_run_config("shakespeare_char", ["--lr=1e-4", "--min_lr=0"]).train.min_lr == 0.0
