"""Every `gptkit tokenizer` subcommand end to end, and user mistakes as one line with exit code 1."""

import json
import subprocess
import sys

import pytest

from gptkit.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def model(tmp_path, data_dir, capsys):
    path = tmp_path / "tok.model"
    rc, out, _ = run(capsys, "tokenizer", "train", str(data_dir / "the-verdict.txt"), "--vocab-size", "400",
                     "--special", "<|endoftext|>", "-o", str(path), "-q")
    assert rc == 0 and "vocab_size=400" in out
    return path


def test_train_writes_model_and_vocab(model):
    assert model.read_text().startswith("gptkit tokenizer v1")
    assert (model.parent / "tok.vocab").read_text(encoding="utf-8").count("->") == 400 - 256 - 1


def test_train_named_dataset(tmp_path, capsys):
    rc, out, _ = run(capsys, "tokenizer", "train", "shakespeare", "--type", "char", "-o", str(tmp_path / "c.model"))
    assert rc == 0 and "vocab_size=65" in out


def test_encode_decode_round_trip(model, tmp_path, capsys, verdict):
    src = tmp_path / "in.txt"
    src.write_text(verdict[:2000], encoding="utf-8")
    rc, out, _ = run(capsys, "tokenizer", "encode", "-t", str(model), str(src))
    assert rc == 0
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(out)
    rc, text, _ = run(capsys, "tokenizer", "decode", "-t", str(model), str(ids_file))
    assert rc == 0 and text == verdict[:2000]


def test_encode_gpt2_golden(capsys):
    # tiktoken.get_encoding("gpt2").encode("Hello world") == [15496, 995]
    rc, out, _ = run(capsys, "tokenizer", "encode", "-t", "gpt2", "--text", "Hello world")
    assert (rc, out) == (0, "15496 995\n")
    rc, out, _ = run(capsys, "tokenizer", "encode", "-t", "gpt2", "--text", "hi<|endoftext|>", "--allowed-special", "all")
    assert (rc, out) == (0, "5303 50256\n")


def test_encode_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Hello world".encode())))
    rc, out, _ = run(capsys, "tokenizer", "encode", "-t", "cl100k_base", "-")
    assert (rc, out) == (0, "9906 1917\n")  # tiktoken cl100k_base: "Hello world" -> [9906, 1917]


def test_show_marks_token_boundaries(capsys):
    rc, out, _ = run(capsys, "tokenizer", "show", "-t", "gpt2", "--text", "Hello world", "--color", "never", "--ids")
    assert (rc, out) == (0, "[Hello][ world]\n15496 995\n")
    rc, out, _ = run(capsys, "tokenizer", "show", "-t", "gpt2", "--text", "Hello world", "--color", "always")
    assert out.count("\x1b[48;5;") == 2 and "Hello" in out


def test_stats(capsys, data_dir):
    rc, out, _ = run(capsys, "tokenizer", "stats", "-t", "char", str(data_dir / "tinyshakespeare.txt"))
    assert rc == 0 and "tokens           1,115,394" in out and "compression      1.00x" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenizer", "encode", "-t", "nope", "--text", "x"], "unknown tokenizer 'nope'"),
        (["tokenizer", "encode", "-t", "gpt2", "/no/such/file.txt"], "/no/such/file.txt: no such file"),
        (["tokenizer", "decode", "-t", "gpt2", "--text", "1 2 x"], "decode reads whitespace-separated integer ids"),
        (["tokenizer", "decode", "-t", "gpt2", "--text", "1 99999999"], "token id 99999999 is not in this vocabulary"),
        (["tokenizer", "decode", "-t", "char", "--text", "1"], "--tokenizer char has no fixed vocabulary"),
        (["tokenizer", "encode", "-t", "gpt2", "--text", "a<|endoftext|>"], "Pass --allowed-special all"),
        (["tokenizer", "train", "/no/such.txt", "-o", "x.model"], "no such file"),
        (["tokenizer", "train", "nosuchdataset", "-o", "x.model"], "not a named dataset"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 1 and message in err and err.startswith("gptkit: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_train_errors(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    rc, _, err = run(capsys, "tokenizer", "train", str(empty), "-o", str(tmp_path / "t.model"))
    assert rc == 1 and "training text is empty" in err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff")
    rc, _, err = run(capsys, "tokenizer", "train", str(bad), "-o", str(tmp_path / "t.model"))
    assert rc == 1 and "not valid UTF-8 at byte offset 3" in err and "--errors replace" in err
    assert not (tmp_path / "t.model").exists()  # failed runs write nothing
    small = tmp_path / "small.txt"
    small.write_text("abcabc")
    rc, _, err = run(capsys, "tokenizer", "train", str(small), "--vocab-size", "300", "-o", str(tmp_path / "t.model"), "-q")
    assert rc == 0 and "gptkit: warning: the corpus supports only 3 merges" in err


@pytest.mark.parametrize("argv", [[], ["tokenizer"], ["tokenizer", "train"], ["tokenizer", "show", "--help"], ["--help"]])
def test_help_and_usage_on_every_level(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert "usage: gptkit" in out + err
    assert e.value.code == (0 if "--help" in argv else 2)


@pytest.mark.parametrize("argv,usage", [
    (["tokenizer", "encode", "--bogus", "--text", "x"], "gptkit tokenizer encode"),
    (["prepare", "shakespeare", "-o", "d", "--nope"], "gptkit prepare"),
    (["tokenizer", "--bogus", "encode"], "gptkit tokenizer"),
])
def test_unknown_flag_is_the_subcommands_usage_error(capsys, argv, usage):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"usage: {usage} [-h]")
    assert f"{usage}: error: unrecognized arguments: --" in err


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gptkit", "tokenizer", "encode", "-t", "gpt2", "--text", "Hello world"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert (r.returncode, r.stdout) == (0, "15496 995\n")


def test_prepare_end_to_end(tmp_path, capsys):
    rc, out, err = run(capsys, "prepare", "shakespeare", "-t", "char", "-o", str(tmp_path / "d"), "-q")
    assert rc == 0 and "train 1,003,854 tokens, val 111,540 tokens (uint16, vocab 65)" in out
    import json

    meta = json.loads((tmp_path / "d/meta.json").read_text())
    assert meta["command"] == f"gptkit prepare shakespeare -t char -o {tmp_path / 'd'} -q"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "nosuch.txt", "-o", "x"], "nosuch.txt: no such file, folder or glob"),
        (["prepare", "shakespeare", "-t", "cl100k_base", "--dtype", "uint16", "-o", "x"], "do not fit uint16"),
        (["prepare", "shakespeare", "--val-fraction", "1.5", "-o", "x"], "val_fraction must be in [0, 1)"),
    ],
)
def test_prepare_user_errors(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, *argv)
    assert rc == 1 and message in err and err.count("\n") == 1


def test_prepare_and_tokenize_with_a_run_dirs_or_hf_folders_own_tokenizer(tmp_path, capsys, tiny_gpt2_folder):
    """Issue 24: `gptkit prepare --tokenizer runs/x` answered "[Errno 21] Is a directory"; a run dir or HF folder
    now gives its own tokenizer, so new data is tokenized the way the model was trained (and --init_from takes it)."""
    run = tmp_path / "run"
    assert main(["train", "--n_layer=1", "--n_head=2", "--n_embd=32", "--max_iters=1", "--eval_interval=1",
                 "--progress=false", "--sample_tokens=0", "--eval_iters=1", f"--out_dir={run}"]) == 0
    assert main(["prepare", "shakespeare", "-t", str(run), "-o", str(tmp_path / "d")]) == 0
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["tokenizer"]["fingerprint"] == json.loads((run / "config.json").read_text())["tokenizer"]["fingerprint"]
    assert main(["prepare", "shakespeare", "-t", str(tiny_gpt2_folder), "-o", str(tmp_path / "g")]) == 0
    assert json.loads((tmp_path / "g" / "meta.json").read_text())["tokenizer"]["spec"] == "gpt2"  # GPT-2's, by name
    capsys.readouterr()
    assert main(["tokenizer", "encode", "-t", str(run), "--text", "ab"]) == 0
    assert capsys.readouterr().out.split() == ["39", "40"]  # the char run's ids
    assert main(["prepare", "shakespeare", "-t", str(tmp_path), "-o", str(tmp_path / "x")]) == 1  # neither
    assert "config.json" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`gptkit sample ... | head -1` (the reader leaves first): exit 141 with nothing on stderr, not an error line."""
    import subprocess
    import sys

    run = tmp_path / "run"
    assert main(["train", "--n_layer=1", "--n_head=2", "--n_embd=32", "--max_iters=1", "--eval_interval=1",
                 "--eval_iters=1", "--progress=false", "--sample_tokens=0", f"--out_dir={run}"]) == 0
    sample = subprocess.Popen([sys.executable, "-m", "gptkit", "sample", str(run), "--max-new-tokens", "20000",
                               "--stream"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sample.stdout.read(10)
    sample.stdout.close()  # as head does once it has its line
    assert sample.wait(timeout=120) == 141 and sample.stderr.read() == b""

