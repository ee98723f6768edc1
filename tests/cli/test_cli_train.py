"""`gptkit train` and `gptkit sample` end to end (in-process), their user errors as one line, and how the train
parser turns config-field options into overrides."""

import json

import pytest

from gptkit.cli import build_parser, main
from gptkit.cli.train import _field_help, config_hint
from gptkit.config import GPTConfig, TrainConfig, parse_overrides

FAST = ["--max_iters=6", "--eval_interval=3", "--eval_iters=2", "--progress=false", "--sample_tokens=0", "--threads=1"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--n_layer=1", "--n_embd=32", "--n_head=2", f"--out_dir={out}", *FAST]) == 0
    return out


def test_train_defaults_to_char_shakespeare_in_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capsys, "train", "--n_layer=1", "--max_iters=2", "--eval_interval=2", "--eval_iters=1",
                     "--progress=false", "--sample_tokens=0")
    assert rc == 0 and "run dir: runs/shakespeare_char" in out and "val loss" in out
    saved = json.loads((tmp_path / "runs" / "shakespeare_char" / "config.json").read_text())
    assert saved["name"] == "shakespeare_char" and saved["model"]["vocab_size"] == 65
    assert saved["train"]["data"] == "shakespeare_char" and saved["tokenizer"]["spec"] == "char"


def test_an_unchanged_preset_ends_with_its_expected_loss(tmp_path, monkeypatch, capsys):
    import gptkit.cli.train

    preset = tmp_path / "tiny.toml"
    preset.write_text('[model]\npreset = "char-tiny"\nn_layer = 1\n[train]\ndata = "shakespeare_char"\n'
                      f'max_iters = 4\neval_interval = 2\neval_iters = 1\nprogress = false\nsample_tokens = 0\n'
                      f'out_dir = "{tmp_path / "run"}"\n', encoding="utf-8")
    monkeypatch.setitem(gptkit.cli.train.EXPECTED_VAL, str(preset), "9.99")
    rc, out, _ = run(capsys, "train", str(preset))
    last = out.strip().splitlines()[-1]
    assert rc == 0 and last.startswith("step 4: train loss") and last.endswith(f"(expected for {preset}: about 9.99)")
    rc, out, _ = run(capsys, "train", str(preset), "--overwrite", "--lr=1e-3")  # changed: no expectation
    assert rc == 0 and "expected" not in out and out.strip().splitlines()[-1].startswith("step 4: train loss")


def test_sample_greedy_and_seeded(run_dir, capsys):
    a = run(capsys, "sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3")
    b = run(capsys, "sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3")
    c = run(capsys, "sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "4")
    assert a[0] == 0 and a[1] == b[1] != c[1] and a[1].startswith("ROMEO:")
    assert len(a[1]) == len("ROMEO:") + 40 + 1
    g1 = run(capsys, "sample", str(run_dir), "--temperature", "0", "--seed", "1", "--max-new-tokens", "30")[1]
    g2 = run(capsys, "sample", str(run_dir), "--temperature", "0", "--seed", "2", "--max-new-tokens", "30")[1]
    assert g1 == g2


def test_sample_num_samples_stream_and_long_prompt(run_dir, capsys):
    rc, out, err = run(capsys, "sample", str(run_dir), "--prompt", "a" * 100, "--max-new-tokens", "5",
                       "--num-samples", "2", "--stream", "--top-k", "5", "--top-p", "0.9")
    assert rc == 0 and out.count("-" * 40) == 1
    assert "100 tokens; the model sees the last 64" in err


def test_sample_text_does_not_depend_on_the_batch_size_or_streaming(run_dir, capsys):
    """Seeded samples are per request (the engine's noise is keyed on seed + sample number), so batching them, a
    batch smaller than --num-samples (the rest queue and join as rows free) or streaming one at a time print the
    same."""
    argv = ["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "25", "--num-samples", "5", "--seed", "9",
            "--top-k", "10"]
    outs = [run(capsys, *argv, *extra) for extra in ([], ["--batch-size", "1"], ["--batch-size", "2"], ["--stream"])]
    assert all(rc == 0 for rc, _, _ in outs) and outs[0][1].count("ROMEO:") == 5
    assert len(set(outs[0][1].split("-" * 40))) == 5  # five different samples
    assert len({out for _, out, _ in outs}) == 1, [out for _, out, _ in outs]


def test_sample_with_a_draft_prints_the_targets_greedy_text_and_the_acceptance(run_dir, capsys):
    argv = ["sample", str(run_dir), "--temperature", "0", "--max-new-tokens", "30", "--num-samples", "2"]
    plain = run(capsys, *argv)[1]
    rc, out, err = run(capsys, *argv, "--draft", str(run_dir), "--draft-k", "3")  # the run drafts for itself
    assert rc == 0 and out == plain and "draft tokens accepted: 100% of" in err
    rc, out, err = run(capsys, "sample", str(run_dir), "--draft", str(run_dir), "--max-new-tokens", "20", "--seed", "1")
    assert rc == 0 and out.startswith("\n") and "new tokens per target forward" in err


@pytest.mark.parametrize("argv,message", [
    (["sample", "/nonexistent/run"], "no such run dir"),
    (["sample", "{run}", "--draft", "{run}", "--stream"], "drop --backend mlx / --stream"),
    (["sample", "{run}", "--temperature", "-1"], "--temperature must be a number from 0 to 2 (0 = greedy), got -1.0"),
    (["sample", "{run}", "--prompt", ""], "the prompt is empty"),
    (["sample", "{run}", "--device", "cuda"], "no CUDA GPU"),
    (["train", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    (["train", "--batch_size=4", "--total_batch_tokens=100"], "not a multiple"),
    (["train", "--data=/nonexistent/dir"], "no such data dir"),
    (["train", "--resume", "/nonexistent/run"], "not a gptkit run dir"),
    (["train", "--resume", "{run}", "--n_layer=3"], "cannot change: n_layer"),
])
def test_user_errors_are_one_line(run_dir, capsys, argv, message):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so asking for it is not an error")
    rc, _, err = run(capsys, *[a.replace("{run}", str(run_dir)) for a in argv])
    assert rc == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_resume_continues_to_new_max_iters(run_dir, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    rc, out, _ = run(capsys, "train", "--resume", str(copy), "--max_iters=9", "--progress=false")
    assert rc == 0 and "step 9:" in out
    steps = [json.loads(x)["step"] for x in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 3, 6, 9]


def test_list_presets(capsys):
    rc, out, _ = run(capsys, "train", "--list")
    assert rc == 0 and "shakespeare_char" in out and "nanogpt_cpu" in out


def test_unknown_arguments_outside_train(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "x", "--n_layer=3"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: gptkit sample" in err
    assert "gptkit sample: error: unrecognized arguments: --n_layer=3" in err


# -- override parsing (no training): every config field is an option of the train parser -------------------


def parse(*argv):
    return build_parser().parse_args(["train", *argv])


@pytest.mark.parametrize("argv", [
    ["--max-iters", "3"], ["--max_iters=3"], ["--max_iters", "3"], ["--train.max-iters=3"], ["--train.max_iters", "3"],
])
def test_every_spelling_of_a_field_is_one_override(argv):
    assert parse(*argv).overrides == ["--train.max_iters=3"]


def test_overrides_keep_their_order_and_qualified_tables():
    args = parse("--model.dropout=0.1", "--train.lr", "3e-4", "--model.n-layer", "2", "--compile=true", "--lr=1e-3")
    assert args.overrides == ["--model.dropout=0.1", "--train.lr=3e-4", "--model.n_layer=2", "--train.compile=true",
                              "--train.lr=1e-3"]
    assert parse_overrides(args.overrides) == ({"dropout": 0.1, "n_layer": 2}, {"lr": 1e-3, "compile": True})


@pytest.mark.parametrize("argv,preset,resume", [
    (["--init-from", "gpt2", "finetune_shakespeare"], "finetune_shakespeare", False),  # the value is not the preset
    (["finetune_shakespeare", "--init_from", "gpt2"], "finetune_shakespeare", False),
    (["--init-from=gpt2"], "shakespeare_char", False),
    (["--resume", "--max_iters", "9"], "shakespeare_char", True),  # bare --resume: the preset's run dir
    (["--resume", "runs/x", "--data", "d", "ft.toml"], "ft.toml", "runs/x"),
])
def test_option_values_are_never_the_preset(argv, preset, resume):
    args = parse(*argv)
    assert (args.preset, args.resume) == (preset, resume)


def test_negative_values_and_resume_dir():
    assert parse("--min_lr", "-1").overrides == ["--train.min_lr=-1"]  # argparse's negative-number rule
    assert parse("--resume", "runs/x", "--overwrite").overwrite


@pytest.mark.parametrize("argv,hint", [
    (["--n_layr=2"], "(unknown config field 'n_layr'; did you mean 'n_layer'?)"),
    (["--max-iter", "3"], "did you mean 'max_iters'?"),
    (["--train.n_layer=2"], "did you mean 'model.n_layer'?"),
])
def test_unknown_train_flag_is_trains_usage_error_with_a_hint(capsys, argv, hint):
    with pytest.raises(SystemExit) as e:
        main(["train", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: gptkit train [PRESET]")
    assert "gptkit train: error: unrecognized arguments: " in err and hint in err


def test_train_help_lists_fields_with_their_comments(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--n_layer INT         transformer blocks" in out and "--compile BOOL" in out
    assert "--model.n_layer" not in out and "--train.lr" not in out  # the other spellings: in the groups' notes only


def test_field_help_from_the_config_comments():
    helps = _field_help(GPTConfig)
    assert helps["n_layer"] == "transformer blocks"  # the docstring's example
    assert helps["gelu"].endswith("so the CPU presets use it)")  # a comment continued on the next line
    assert _field_help(TrainConfig)["init_from"].startswith("Start from these weights")  # a comment above
    assert config_hint(["--n_layr=2"]) == " (unknown config field 'n_layr'; did you mean 'n_layer'?)"


def test_backend_mlx_without_mlx_says_how_to_install(tmp_path, monkeypatch, capsys):
    """Where mlx is not installed, --backend mlx is one line naming the install command (simulated here)."""
    import importlib.util

    from gptkit.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.split(".")[0] == "mlx" else real(name, *a))
    assert main(["train", "--backend", "mlx", f"--out_dir={tmp_path / 'r'}"]) == 1
    assert 'pip install "gptkit[mlx]"' in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "--backend", "mlx"]) == 1
    assert 'pip install "gptkit[mlx]"' in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
