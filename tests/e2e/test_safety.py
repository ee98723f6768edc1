"""No lost, mixed or stuck work (issue 16; kills and signals during training: tests/e2e/test_faults.py): a run dir is
locked while a run owns it, --resume with --overwrite is refused, and export never writes into a run dir, a
non-empty folder, or anything at all when it is refused."""

import json
import signal
import subprocess
import sys
import time

import pytest

from gptkit.cli import main
from gptkit.cli.export import HF_EXPORT_FILES
from gptkit.training import run_dir as rd

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--progress=false", "--sample_tokens=0", "--eval_iters=1"]


def test_a_second_training_into_the_same_dir_fails_naming_the_holder(tmp_path, capsys, start_training):
    run = tmp_path / "run"
    first = start_training(run, TINY)
    try:
        assert main(["train", *TINY, "--max_iters=2", f"--out_dir={run}", "--overwrite"]) == 1
        assert f"is in use by a training run (pid {first.pid})" in capsys.readouterr().err
        assert main(["train", "--resume", str(run), "--max_iters=5"]) == 1
        assert f"(pid {first.pid})" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0]  # the first run's history alone, nothing mixed in
    assert main(["train", "--resume", str(run), "--max_iters=5", "--eval_interval=5"]) == 0  # the lock died with it


def test_resume_with_overwrite_is_refused(tmp_path, capsys):
    assert main(["train", *TINY, "--max_iters=1", f"--out_dir={tmp_path / 'r'}", "--resume", "--overwrite"]) == 1
    assert "--resume continues a run and --overwrite erases one" in capsys.readouterr().err


def test_export_writes_only_new_or_empty_folders_and_nothing_when_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "shakespeare_char_gpt2", *TINY, "--bias=true", "--max_iters=1", "--eval_interval=1",
                 f"--out_dir={run}"]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["export", str(run), "-o", str(run)]) == 1  # into the run dir itself
    assert "is a gptkit run dir" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    for extra in ([], ["--overwrite"]):  # a folder with a file export did not write: never replaced
        assert main(["export", str(run), "-o", str(tmp_path / "full"), *extra]) == 1
        err = capsys.readouterr().err
        assert "holds other things than an earlier export (mine.txt)" in err and "--overwrite" not in err
        assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    (tmp_path / "full" / "mine.txt").unlink()
    assert main(["export", str(run), "-o", str(tmp_path / "full")]) == 0  # an empty folder
    best = (run / rd.BEST).is_file()  # the default checkpoint, as for sample and eval: best if the run has one
    assert capsys.readouterr().out.rstrip().endswith(str(run / (rd.BEST if best else rd.LAST)))
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == sorted(HF_EXPORT_FILES)
    assert main(["export", str(run), "-o", str(tmp_path / "full")]) == 1  # an earlier export: only with --overwrite
    assert "holds an earlier export; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(run), "-o", str(tmp_path / "full"), "--overwrite"]) == 0
    modern = tmp_path / "modern"  # the default preset: rotary positions, which GPT-2's format cannot hold
    assert main(["train", *TINY, "--max_iters=1", "--eval_interval=1", f"--out_dir={modern}"]) == 0
    assert main(["export", str(modern), "-o", str(tmp_path / "refused")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "modern", "run"]  # no folder, no temp left


def test_export_overwrite_never_deletes_what_export_did_not_write(tmp_path, monkeypatch, capsys):
    """Issue 23, item 1: `-o runs --overwrite` replaced the whole runs folder, the source run included. --overwrite
    replaces a folder only when it holds nothing but an earlier export: a parent of runs or data, `.`, `~` and `/`
    are refused with nothing deleted."""
    runs, data = tmp_path / "runs", tmp_path / "data"
    assert main(["train", "shakespeare_char_gpt2", *TINY, "--bias=true", "--max_iters=1", "--eval_interval=1",
                 f"--out_dir={runs / 'q'}"]) == 0
    assert main(["prepare", "shakespeare", "-t", "char", "-o", str(data / "c")]) == 0
    home = tmp_path / "home"
    (home / ".bashrc").parent.mkdir()
    (home / ".bashrc").write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(runs)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    for out in (str(runs), str(data), ".", str(home), "/", str(runs / "q" / "..")):  # the shell expands ~
        assert main(["export", str(runs / "q"), "-o", out, "--overwrite"]) == 1, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--overwrite" not in err.split("error:")[1], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing deleted, no temp folder left


def test_a_live_run_without_a_checkpoint_is_never_told_to_overwrite(tmp_path, capsys, start_training):
    """Issue 23, item 15: a run still training before its first checkpoint (its lock held) is not a run to erase:
    export, sample (as serve loads it) and --resume say it is training, never `--overwrite`."""
    run = tmp_path / "run"
    proc = start_training(run, TINY)
    try:
        capsys.readouterr()
        for argv in (["export", str(run), "-o", str(tmp_path / "hf")], ["sample", str(run), "--max-new-tokens=2"],
                     ["train", "--resume", str(run)]):
            assert main(argv) == 1, argv
            err = capsys.readouterr().err
            assert "--overwrite" not in err and ("still training" in err or "in use by a training run" in err), err
    finally:
        proc.kill()
        proc.wait()
    assert main(["sample", str(run), "--max-new-tokens=2"]) == 1  # the same dir, its run gone: start it again
    assert "--overwrite" in capsys.readouterr().err


def test_a_metrics_line_cut_by_a_kill_does_not_block_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--max_iters=4", "--eval_interval=2", f"--out_dir={run}"]) == 0
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 6, "tokens": 3')  # killed mid-write
    assert main(["train", "--resume", str(run), "--max_iters=6"]) == 0
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [0, 2, 4, 6]
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:1] + ["garbage"] + lines[1:]) + "\n")
    assert main(["train", "--resume", str(run), "--max_iters=8"]) == 1
    assert "metrics.jsonl:2: not a JSON record" in capsys.readouterr().err


def test_resume_with_nothing_to_do_and_a_run_without_checkpoint_say_what_works(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={run}"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "is already at step 2 of max_iters 2: nothing to do" in capsys.readouterr().out
    for name in (rd.LAST, rd.BEST):  # as if killed before its first checkpoint
        (run / name).unlink()
    assert main(["train", "--resume", str(run)]) == 1
    assert f"start it again with `gptkit train ... --out_dir={run} --overwrite`" in capsys.readouterr().err


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()}
    except FileNotFoundError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = next(ln for ln in open(f"/proc/{pid}/status") if ln.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return " Z " not in state and "zombie" not in state  # a reaped-later zombie holds no memory and does nothing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_prepare_killed_leaves_no_worker_behind(tmp_path, shakespeare, sig):
    big = tmp_path / "big.txt"
    big.write_text(shakespeare * 40)  # 45 MB: tokenizing it takes long enough to kill it on the way
    cmd = [sys.executable, "-m", "gptkit", "prepare", str(big), "-t", "gpt2", "-o", str(tmp_path / "out"),
           "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(workers := _children(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    time.sleep(1.0)
    assert not [w for w in workers if _alive(w)]
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and not (tmp_path / "out" / "meta.json").exists()


def test_a_small_val_split_fails_before_any_work_and_data_paths_are_kept_absolute(tmp_path, monkeypatch, capsys):
    from gptkit.data.prepare import prepare

    (tmp_path / "t.txt").write_text("abcdefghij" * 300)
    monkeypatch.chdir(tmp_path)
    prepare(["t.txt"], "char", "d", val_fraction=0.01, progress=False)  # 30 val tokens
    start = time.perf_counter()
    assert main(["train", *TINY, "--data=d", "--block_size=64", "--out_dir=big"]) == 1
    assert "the val split has 30 tokens, fewer than the 65" in capsys.readouterr().err
    assert time.perf_counter() - start < 10 and not (tmp_path / "big").exists()
    assert main(["train", *TINY, "--data=d", "--block_size=8", "--max_iters=2", "--eval_interval=2",
                 "--out_dir=run"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["data"] == str(tmp_path / "d")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "run" / ".ckpt.safetensors.x1y2.tmp").write_bytes(b"half")  # a crash's leftover
    assert main(["train", "--resume", str(tmp_path / "run"), "--max_iters=4"]) == 0
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize("argv, match", [
    (["train", "--vocab_size=10"], "vocab_size comes from the data's tokenizer"),
    (["tokenizer", "train", "x.txt", "--type", "char", "--vocab-size", "300", "-o", "t.model"],
     "--vocab-size applies to --type bpe"),
])
def test_options_that_would_be_ignored_are_refused(tmp_path, monkeypatch, capsys, argv, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("some text")
    assert main(argv) == 1
    assert match in capsys.readouterr().err and not (tmp_path / "t.model").exists()


@pytest.mark.parametrize("argv", [["prepare", "shakespeare", "-o", "d", "--workers", "-1"],
                                  ["eval", "gpt2", "--hellaswag", "val", "--limit", "-1"],
                                  ["tokenizer", "train", "x.txt", "--workers", "0", "-o", "t.model"]])
def test_absurd_counts_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be >= " in capsys.readouterr().err


def test_a_jsonl_field_holding_a_number_says_so(tmp_path):
    from gptkit.data.prepare import prepare

    (tmp_path / "d.jsonl").write_text('{"text": "fine"}\n{"text": 42}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: field 'text' holds int 42, not text"):
        prepare([str(tmp_path / "d.jsonl")], "char", tmp_path / "out", progress=False)


def test_a_moved_data_dir_is_accepted_on_resume_when_its_meta_matches(tmp_path, monkeypatch, capsys):
    from gptkit.data.prepare import prepare

    text = "".join(chr(97 + (i * 7) % 26) for i in range(4000))
    (tmp_path / "t.txt").write_text(text)
    prepare([str(tmp_path / "t.txt")], "char", tmp_path / "d", progress=False)
    run = tmp_path / "run"
    assert main(["train", *TINY, "--block_size=8", f"--data={tmp_path / 'd'}", "--max_iters=2", "--eval_interval=2",
                 f"--out_dir={run}"]) == 0
    (tmp_path / "d").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max_iters=4"]) == 1
    assert f"the run's data dir {tmp_path / 'd'} is gone; if it moved, resume with --data=NEW_DIR" in \
        capsys.readouterr().err
    prepare([str(tmp_path / "t.txt")], "char", tmp_path / "other", val_fraction=0.2, progress=False)
    assert main(["train", "--resume", str(run), "--max_iters=4", f"--data={tmp_path / 'other'}"]) == 1
    assert "holds other data than the run" in (err := capsys.readouterr().err) and "val 800 in 1 file(s)" in err
    (tmp_path / "x.txt").write_text(text.replace("q", "!"))
    prepare([str(tmp_path / "x.txt")], "char", tmp_path / "chars", progress=False)
    assert main(["train", "--resume", str(run), "--max_iters=4", f"--data={tmp_path / 'chars'}"]) == 1
    assert "the data's 'char' vocabulary lacks 'q' and has '!' besides (26 vs the run's 26 characters)" in \
        capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--max_iters=4", f"--data={tmp_path / 'moved'}"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["data"] == str(tmp_path / "moved")
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_absurd_shard_tokens_are_refused_and_a_re_prepare_leaves_no_stale_shard(tmp_path, shakespeare, capsys):
    from gptkit.data.prepare import load_meta

    (tmp_path / "s.txt").write_text(shakespeare)
    assert main(["prepare", str(tmp_path / "s.txt"), "-t", "char", "-o", str(tmp_path / "d"), "--shard-tokens", "1",
                 "-q"]) == 1
    assert "would write about 1,115,394 shard files" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was written
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    out = str(tmp_path / "d")
    assert main(["prepare", str(tmp_path / "s.txt"), "-t", "char", "-o", out, "--shard-tokens", "200k", "-q"]) == 0
    assert len(list((tmp_path / "d").glob("train_*.bin"))) == 6
    assert main(["prepare", str(tmp_path / "s.txt"), "-t", "gpt2", "-o", out, "--shard-tokens", "1M", "-q"]) == 0
    listed = {f["name"] for s in load_meta(out)["splits"].values() for f in s["files"]}
    assert {p.name for p in (tmp_path / "d").iterdir()} == listed | {"meta.json", "notes.txt"}
    assert main(["prepare", str(tmp_path / "s.txt"), "-t", "char", "-o", out, "-q"]) == 0
    assert {p.name for p in (tmp_path / "d").iterdir()} == {"train.bin", "val.bin", "tokenizer.model", "meta.json",
                                                            "notes.txt"}


@pytest.mark.parametrize("argv", [["prepare", "s.txt", "-t", "char", "-o", "{f}", "-q"],
                                  ["prepare", "s.txt", "-t", "char", "-o", "{f}/sub", "-q"],
                                  ["train", *TINY, "--out_dir={f}"], ["train", *TINY, "--out_dir={f}/a/b"]])
def test_an_output_path_that_is_a_file_says_so(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.txt").write_text("some text " * 50)
    (tmp_path / "f").write_text("mine")
    assert main([a.replace("{f}", str(tmp_path / "f")) for a in argv]) == 1
    err = capsys.readouterr().err
    assert f"gptkit: error: {tmp_path / 'f'}: a file where a folder is needed; give another path" in err, err
    assert (tmp_path / "f").read_text() == "mine"


def test_a_damaged_config_json_is_named(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--max_iters=2", "--eval_interval=2", f"--out_dir={run}"]) == 0
    (run / "config.json").write_text((run / "config.json").read_text()[:90])  # cut short
    for argv in (["sample", str(run), "--max-new-tokens", "3"], ["eval", str(run), "--data", "shakespeare_char"],
                 ["train", "--resume", str(run)]):
        capsys.readouterr()
        assert main(argv) == 1
        assert f"gptkit: error: {run / 'config.json'}: not valid JSON (" in capsys.readouterr().err, argv


def test_the_tokenizer_mismatch_of_eval_is_a_whole_sentence():
    from gptkit.data.prepare import check_tokenizer, resolve_data_dir
    from gptkit.tokenizer.load import get_tokenizer

    with pytest.raises(ValueError) as e:
        check_tokenizer(resolve_data_dir("shakespeare_char"), get_tokenizer("gpt2"), name="the model's tokenizer")
    assert str(e.value).endswith("prepare the data again with that tokenizer, or give a model trained with the "
                                 "data's tokenizer")


def test_every_subcommand_takes_its_flags_with_dashes_or_underscores(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("some text, some more text " * 40)
    for spelling in ("val-fraction", "val_fraction"):
        out = tmp_path / spelling
        assert main(["prepare", str(tmp_path / "s.txt"), "-t", "char", "-o", str(out), f"--{spelling}=0.25",
                     "--shard_tokens" if "_" in spelling else "--shard-tokens", "500", "-q"]) == 0
        assert json.loads((out / "meta.json").read_text())["val_fraction"] == 0.25
    assert main(["tokenizer", "train", str(tmp_path / "s.txt"), "--vocab_size", "260", "-o", str(tmp_path / "t.model"),
                 "-q"]) == 0
    assert "vocab_size=260" in capsys.readouterr().out


@pytest.mark.parametrize("argv, usage", [(["eval", "gpt2", "--bogus"], "gptkit eval"),
                                         (["export", "r", "-o", "x", "--max_iters=3"], "gptkit export"),
                                         (["sample", "r", "--max_new_tokenz", "3"], "gptkit sample")])
def test_an_unknown_flag_shows_its_subcommands_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"usage: {usage} [-h]") and f"{usage}: error: unrecognized" in err
