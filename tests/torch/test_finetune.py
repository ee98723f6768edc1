"""--init_from: a new run that starts from a gptkit run's or a HF GPT-2 folder's weights (Raschka ch. 5/nanoGPT
finetuning), with the tokenizer checked against the data."""

import json

import numpy as np
import pytest
from tests.torch.test_backend import tiny_run, trainer

from gptkit import CharTokenizer
from gptkit.cli import main
from gptkit.torch.backend import train
from gptkit.torch.weights import model_tensors
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd
from gptkit.training.setup import resume_config


TINY_ARGS = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--eval_iters=1",
             "--progress=false", "--sample_tokens=0", "--threads=1", "--dtype=float32", "--device=cpu"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base")
    result = train(tiny_run(tmp, "base"))
    return result


def test_init_from_a_run_dir_starts_where_it_ended(tmp_path, base_run):
    # another shape and dropout in this config: the shape comes from the source, dropout from here
    cfg = tiny_run(tmp_path, "ft", init_from=str(base_run.run_dir), max_iters=6, eval_interval=6, lr=1e-3)
    cfg = cfg.__class__(cfg.model.__class__(**{**cfg.model.__dict__, "n_embd": 64, "dropout": 0.1}), cfg.train, cfg.name)
    tr = trainer(cfg)
    assert (tr.cfg.model.n_embd, tr.cfg.model.dropout) == (32, 0.1)
    want, _ = ckpt.read_checkpoint(base_run.run_dir / rd.LAST, prefix="model.")
    got = model_tensors(tr.backend.model)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert tr.step == 0 and not tr.backend.optimizer.state  # a new run: fresh optimizer and counters
    result = tr.run()
    # the first evaluation (step 0) is the source's last one: same weights, same fixed eval batches
    assert result.evals[0]["val_loss"] == pytest.approx(base_run.evals[-1]["val_loss"], abs=1e-6)
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["train"]["init_from"] == str(base_run.run_dir) and saved["model"]["n_embd"] == 32


def test_init_from_a_hf_folder_crops_positions_and_lowers_the_loss(tmp_path, tiny_gpt2_folder):
    cfg = tiny_run(tmp_path, "ft", data="shakespeare_gpt2", init_from=str(tiny_gpt2_folder), max_iters=8,
                   eval_interval=8, lr=3e-3, warmup_iters=0)
    tr = trainer(cfg)
    assert (tr.cfg.model.vocab_size, tr.cfg.model.block_size, tr.cfg.model.bias) == (50257, 16, True)
    from gptkit.hf.arch import read_hf

    _, hf = read_hf(tiny_gpt2_folder)
    assert np.array_equal(model_tensors(tr.backend.model)["wpe.weight"], hf["wpe.weight"][:16])
    assert np.array_equal(model_tensors(tr.backend.model)["h.1.mlp.c_fc.weight"], hf["h.1.mlp.c_fc.weight"])
    result = tr.run()
    first, last = result.evals[0]["val_loss"], result.evals[-1]["val_loss"]
    assert first > 10.0 and last < first - 0.2  # random tiny weights start near ln(50257) = 10.8
    # resuming the finetuned run reads its checkpoint, not the source again
    resumed = train(resume_config(tmp_path / "ft", ["--max_iters=10"]), resume=True)
    assert resumed.step == 10


def test_tokenizer_mismatch_is_refused(tmp_path, base_run, tiny_gpt2_folder):
    with pytest.raises(ValueError, match=r"trained with tokenizer 'gpt2' \(vocab 50,257\), but .* prepared with "
                                         r"'char' \(vocab 65\); prepare the data with the same tokenizer"):
        trainer(tiny_run(tmp_path, "a", init_from=str(tiny_gpt2_folder)))
    with pytest.raises(ValueError, match=r"trained with tokenizer 'char' \(vocab 65\)"):
        trainer(tiny_run(tmp_path, "b", data="shakespeare_gpt2", init_from=str(base_run.run_dir)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_block_size_larger_than_the_source_is_refused(tmp_path, base_run):
    cfg = tiny_run(tmp_path, "ft", init_from=str(base_run.run_dir))
    cfg = cfg.__class__(cfg.model.__class__(**{**cfg.model.__dict__, "block_size": 32}), cfg.train, cfg.name)
    with pytest.raises(ValueError, match="block_size=32 exceeds the 16 positions.*--block_size=16 or less"):
        trainer(cfg)


def test_cli_init_from_with_space_separated_values(tmp_path, base_run, capsys):
    rc = main(["train", "--init-from", str(base_run.run_dir), "--data", "shakespeare_char", "--out_dir",
               str(tmp_path / "ft"), "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--batch_size=2",
               "--block_size=16", "--progress=false", "--sample_tokens=0", "--threads=1"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["train"]["init_from"] == str(base_run.run_dir)
    rc = main(["train", "--init-from", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "x")])
    assert rc == 1 and "no such run dir or folder, and not a GPT-2 name" in capsys.readouterr().err


def test_finetune_preset_is_nanogpts_recipe_and_runs(tmp_path, tiny_gpt2_folder):
    from gptkit.config import load_run_config

    cfg = load_run_config("finetune_shakespeare")  # nanoGPT config/finetune_shakespeare.py (+ train.py defaults)
    m, t = cfg.model, cfg.train
    assert (t.init_from, t.data, m.block_size, m.dropout) == ("gpt2-xl", "shakespeare_gpt2", 1024, 0.0)
    assert (t.batch_size, t.total_batch_tokens, t.max_iters, t.eval_interval, t.eval_iters) == (1, 32768, 20, 5, 40)
    assert t.lr == t.min_lr == 3e-5 and t.warmup_iters == 0 and (t.weight_decay, t.beta2) == (0.1, 0.95)
    # the same preset on a tiny stand-in for gpt2-xl, shortened: it runs and keeps its init's shape
    cfg = load_run_config("finetune_shakespeare", [f"--init_from={tiny_gpt2_folder}", f"--out_dir={tmp_path / 'ft'}",
                                                   "--block_size=64", "--total_batch_tokens=128", "--batch_size=2",
                                                   "--max_iters=2", "--eval_iters=2", "--lr=1e-3", "--min_lr=1e-3", "--progress=false",
                                                   "--sample_tokens=0", "--threads=1"])
    result = train(cfg)
    assert result.step == 2 and result.evals[0]["val_loss"] > result.evals[-1]["val_loss"]


@pytest.fixture
def unreadable_source(tmp_path, monkeypatch):
    """An --init_from run dir whose checkpoint is garbage (reading it is an error naming the file), and the list of
    sources the run set-up asked to read."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model": {}, "train": {}, "tokenizer": {"spec": "char"}}))
    (src / rd.LAST).write_bytes(b"\x00" * 4096)
    reads = []
    from gptkit.training import setup

    real = setup.read_model_source
    monkeypatch.setattr(setup, "read_model_source", lambda spec, **kw: reads.append(spec) or real(spec, **kw))
    return src, reads


def test_a_refused_run_reads_no_weights(tmp_path, base_run, unreadable_source):
    """Issue 22: the run dir is locked and checked before --init_from is read, so a run into a busy dir or one that
    holds a run is refused at once (for gpt2-xl, before gigabytes are read); the same source into a fresh dir is
    read (and fails, naming it), and leaves no dir behind."""
    src, reads = unreadable_source
    with pytest.raises(ValueError, match="already holds a run"):
        trainer(tiny_run(tmp_path, init_from=str(src), out_dir=str(base_run.run_dir)))
    busy = tmp_path / "busy"
    lock = rd.lock_run_dir(busy)
    try:
        with pytest.raises(ValueError, match="in use by a training run"):
            trainer(tiny_run(tmp_path, "busy", init_from=str(src)))
    finally:
        lock.close()
    assert reads == []
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        trainer(tiny_run(tmp_path, "fresh", init_from=str(src)))
    assert reads == [str(src)] and not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("tie,pad", [(True, 1), (False, 1), (True, 64)])
def test_init_from_with_the_chat_tokens_added_grows_the_vocabulary(tmp_path, tie, pad):
    """Issue 24: data tokenized with the run's tokenizer plus the chat tokens finetunes the run with its embedding
    (and untied head) grown by two rows at the mean of the others; the logits of the old ids are the old model's.
    With padding room (65 ids padded to 128 rows) no tensor grows."""
    import torch

    from gptkit.tokenizer.chat import IM_END, IM_START
    from gptkit.tokenizer.load import load_tokenizer
    from gptkit.torch.weights import load_model

    base = tmp_path / "base"
    assert main(["train", *TINY_ARGS, f"--tie_weights={str(tie).lower()}", f"--pad_vocab_to={pad}", "--max_iters=2",
                 "--eval_interval=2", f"--out_dir={base}"]) == 0
    chat_tok = load_tokenizer(base / "tokenizer.model").with_special_tokens([IM_START, IM_END])
    chat_tok.save(tmp_path / "chat.model")
    assert main(["prepare", "shakespeare", "-t", str(tmp_path / "chat.model"), "-o", str(tmp_path / "data")]) == 0
    tr = trainer(tiny_run(tmp_path, "ft", init_from=str(base), data=str(tmp_path / "data")))
    old, _ = load_model(base, "last")
    new = tr.backend.model.eval()
    assert tr.cfg.model.vocab_size == 67 and new.wte.weight.shape[0] == (128 if pad == 64 else 67)
    idx = torch.tensor([chat_tok.encode("ROMEO: hark")])
    with torch.no_grad():
        # the training model takes a CPU's explicit attention path, the loaded one SDPA: the same math, rounded apart
        torch.testing.assert_close(new(idx)[0][..., :65], old(idx)[0], rtol=0, atol=1e-6)
        mean = old.wte.weight[:65].double().mean(0).float()
        torch.testing.assert_close(new.wte.weight[65:67], mean.expand(2, -1), rtol=0, atol=1e-7)
        if not tie:
            torch.testing.assert_close(new.lm_head.weight[65:67], old.lm_head.weight[:65].double().mean(0).float()
                                       .expand(2, -1), rtol=0, atol=1e-7)
    assert tr.run().step == 12  # it trains on, and its checkpoint is the grown model
    assert load_model(tmp_path / "ft", "last")[1].config.vocab_size == 67


def test_init_from_with_other_tokens_is_still_refused(tmp_path, base_run):
    other = CharTokenizer.train("abc").with_special_tokens(["<|im_start|>"])
    other.save(tmp_path / "other.model")
    (tmp_path / "t.txt").write_text("abcabc" * 2000)
    assert main(["prepare", str(tmp_path / "t.txt"), "-t", str(tmp_path / "other.model"), "-o", str(tmp_path / "d")]) == 0
    with pytest.raises(ValueError, match="prepare the data with the same tokenizer"):
        trainer(tiny_run(tmp_path, "x", init_from=str(base_run.run_dir), data=str(tmp_path / "d")))


def test_a_grown_model_exports_to_transformers_with_the_same_logits_and_ids(tmp_path):
    """Issue 24: the HF export of a run whose vocabulary was extended with the chat tokens loads in transformers: the
    same logits, and AutoTokenizer gives the chat tokens their ids."""
    import torch
    transformers = pytest.importorskip("transformers")

    from gptkit.tokenizer.chat import IM_END, IM_START
    from gptkit.tokenizer.load import load_tokenizer
    from gptkit.torch.weights import load_model

    base = tmp_path / "base"
    assert main(["train", "shakespeare_char_gpt2", *TINY_ARGS, "--bias=true", "--max_iters=2", "--eval_interval=2",
                 f"--out_dir={base}"]) == 0
    chat_tok = load_tokenizer(base / "tokenizer.model").with_special_tokens([IM_START, IM_END])
    chat_tok.save(tmp_path / "chat.model")
    assert main(["prepare", "shakespeare", "-t", str(tmp_path / "chat.model"), "-o", str(tmp_path / "data")]) == 0
    assert main(["train", *TINY_ARGS, "--max_iters=2", "--eval_interval=2", f"--init_from={base}",
                 f"--data={tmp_path / 'data'}", f"--out_dir={tmp_path / 'ft'}"]) == 0
    assert main(["export", str(tmp_path / "ft"), "-o", str(tmp_path / "hf")]) == 0
    text = f"{IM_START}user\nhi{IM_END}\n{IM_START}a"  # within block_size 16
    ids = chat_tok.encode(text, allowed_special="all")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok(text)["input_ids"] == ids and ids.count(65) == 2 and ids.count(66) == 1
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours, _ = load_model(tmp_path / "ft", "last")
    with torch.no_grad():
        torch.testing.assert_close(hf(torch.tensor([ids])).logits, ours(torch.tensor([ids]))[0], atol=1e-5, rtol=0)
    assert load_tokenizer(tmp_path / "hf" / "tokenizer.json").fingerprint() == chat_tok.fingerprint()
