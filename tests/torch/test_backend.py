"""Training: LR schedule, decay groups, accumulation == big batch, exact resume, Ctrl-C, NaN, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gptkit.config import GPTConfig, RunConfig, TrainConfig
from gptkit.torch.backend import TorchBackend, train
from gptkit.torch.optim import configure_optimizers
from gptkit.torch.weights import load_model
from gptkit.training import checkpoint as ckpt
from gptkit.training import run_dir as rd
from gptkit.training.backend import joined
from gptkit.training.run import Run, TrainingDiverged
from gptkit.training.setup import accumulation_steps, lr_at, resume_config


def tiny_run(tmp_path, name="run", **train_kw) -> RunConfig:
    model = GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32, gelu="exact")
    t = dict(data="shakespeare_char", out_dir=str(tmp_path / name), batch_size=4, max_iters=12, eval_interval=6,
             eval_iters=2, warmup_iters=2, lr=3e-3, min_lr=3e-4, sample_tokens=0, progress=False, threads=1,
             dtype="float32", device="cpu")  # auto would pick bf16 on AVX512-BF16 CPUs (or a GPU, TF32), and these
    #                                         tests compare to 1e-6; the GPU paths are measured by bench/, not here
    return RunConfig(model, TrainConfig(**{**t, **train_kw}), name="test")


def trainer(cfg: RunConfig, **kw) -> Run:
    return Run(cfg, TorchBackend(), **kw)


def test_lr_schedule_docstring_example():
    t = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert lr_at(0, t) == pytest.approx(1e-5)
    assert lr_at(99, t) == pytest.approx(1e-3)
    assert lr_at(100, t) == pytest.approx(1e-3)
    assert lr_at(1050, t) == pytest.approx(5.5e-4)  # halfway down the cosine: (lr + min_lr) / 2
    assert lr_at(2000, t) == pytest.approx(1e-4) and lr_at(5000, t) == pytest.approx(1e-4)
    lrs = [lr_at(s, t) for s in range(100, 2000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_decay_groups():
    from gptkit.torch.model import GPT

    m = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
    opt = configure_optimizers(m, TrainConfig(weight_decay=0.1), torch.device("cpu"))["adamw"]
    decay, no_decay = opt.param_groups
    assert opt.defaults["fused"]  # torch's one-kernel AdamW on CPUs too
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n_decay = sum(p.numel() for p in decay["params"])
    assert n_decay == 65 * 32 + 16 * 32 + 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)  # wte, wpe, 4 matmuls/block


def test_adamw_is_torchs_update_without_importing_dynamo(tmp_path):
    """gptkit.torch.optim.AdamW (torch's AdamW with its dynamo wrappers unwrapped) moves weights and state exactly as
    torch.optim.AdamW does over three steps with two decay groups, its state dict loads into torch's and back, its step
    hooks run; and a training run with Muon, a resume and a sample imports neither torch._dynamo nor (its checkpoints
    pass through gptkit.torch.fsdp.full) torch.distributed.tensor: a fresh process."""
    from gptkit.torch.optim import AdamW

    def steps(cls, state=None, n=3):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        groups = [{"params": [m[0].weight], "weight_decay": 0.1}, {"params": [m[0].bias, *m[1].parameters()],
                                                                      "weight_decay": 0.0}]
        opt, calls = cls(groups, lr=1e-2, betas=(0.9, 0.95)), []
        opt.register_step_pre_hook(lambda *a: calls.append("pre"))
        if state:
            opt.load_state_dict(state)
        for i in range(n):
            m(torch.randn(4, 8, generator=torch.Generator().manual_seed(i))).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            assert all(p.grad is None for p in m.parameters())
        return [p.detach().clone() for p in m.parameters()], opt.state_dict(), calls

    ours, theirs = steps(AdamW), steps(torch.optim.AdamW)
    assert all(torch.equal(a, b) for a, b in zip(ours[0], theirs[0])) and ours[2] == ["pre"] * 3
    assert str(ours[1]) == str(theirs[1])  # the same state, tensors and groups
    resumed = steps(torch.optim.AdamW, ours[1]), steps(AdamW, theirs[1])
    assert all(torch.equal(a, b) for a, b in zip(*(r[0] for r in resumed)))
    code = ("import sys; from pathlib import Path\n"
            "from tests.torch.test_backend import tiny_run; from gptkit.torch.backend import train\n"
            "from gptkit.training.setup import resume_config\n"
            f"cfg = tiny_run(Path({str(tmp_path)!r}), optimizer='muon', max_iters=4, eval_interval=2, sample_tokens=8)\n"
            "train(cfg); train(resume_config(Path(cfg.train.out_dir), ['--max_iters=6']), resume=True)\n"
            "loaded = [m for m in ('torch._dynamo', 'torch.distributed.tensor') if m in sys.modules]\n"
            "assert not loaded, f'a one-process run imported {loaded}'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("max_norm,nan", [(0.5, False), (100.0, False), (100.0, True)])  # clipping, not, a NaN
def test_clip_grad_norm_is_torchs_bit_for_bit(max_norm, nan):
    """gptkit.torch.optim.clip_grad_norm_ (CPU, one process: skips the multiply by 1 when nothing is clipped) returns
    torch.nn.utils.clip_grad_norm_'s norm and leaves the same gradients, bit for bit."""
    from gptkit.torch.optim import clip_grad_norm_

    def grads():
        g = torch.Generator().manual_seed(0)
        ps = [torch.zeros(s, requires_grad=True) for s in [(65, 32), (32,), (96, 32), (7,)]]
        for p in ps[:3]:  # the last has no gradient
            p.grad = torch.randn(p.shape, generator=g) * 0.3
        ps[1].grad[0] = float("nan") if nan else ps[1].grad[0]
        return ps

    ours, theirs = grads(), grads()
    norm, expected = clip_grad_norm_(ours, max_norm), torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert torch.equal(norm, expected) if not nan else bool(norm.isnan() and expected.isnan())
    assert all(torch.equal(a.grad, b.grad) or (nan and a.grad.isnan().all() and b.grad.isnan().all())
               for a, b in zip(ours[:3], theirs[:3])) and ours[3].grad is None
    if not nan:
        assert (expected > max_norm) == (max_norm == 0.5)
        assert float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours[:3]]))) <= max_norm + 1e-5


def test_accumulation_steps():
    assert accumulation_steps(TrainConfig(batch_size=4, total_batch_tokens=0), 16, 1) == 1
    assert accumulation_steps(TrainConfig(batch_size=4, total_batch_tokens=512), 16, 2) == 4
    with pytest.raises(ValueError, match="not a multiple.*e.g. 512"):
        accumulation_steps(TrainConfig(batch_size=4, total_batch_tokens=500), 16, 2)


def test_joined_docstring_example_and_the_batches_it_never_joins():
    ids = lambda b, t, v=0: np.full((b, t), v, dtype=np.int64)  # noqa: E731
    got = joined([(ids(16, 64), ids(16, 64))] * 20)
    assert [(x.shape, y.shape, n) for x, y, n in got] == [((128, 64), (128, 64), 8)] * 2 + [((64, 64), (64, 64), 4)]
    # ignored targets (chat data: a batch's mean is over its own counted tokens) and another shape stay alone; so
    # does a batch already past max_tokens
    chat, wide, big = (ids(16, 64), ids(16, 64, -1)), (ids(16, 32), ids(16, 32)), (ids(256, 64), ids(256, 64))
    got = joined([(ids(16, 64), ids(16, 64)), chat, (ids(16, 64), ids(16, 64)), wide, big, big])
    assert [(x.shape, n) for x, _, n in got] == [((16, 64), 1), ((16, 64), 1), ((16, 64), 1), ((16, 32), 1),
                                                 ((256, 64), 1), ((256, 64), 1)]


def test_eval_loss_is_the_mean_of_the_batch_means(tmp_path):
    """Joining batches into one forward (training.backend.joined) leaves evaluation's figure as it was: the mean of
    each batch's mean loss, chat batches with ignored targets included."""
    cfg = tiny_run(tmp_path)
    backend = TorchBackend()
    backend.setup(cfg.train)
    backend.seed(0)
    backend.build(cfg.model, cfg.train, None, "")
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, (4, 16)), rng.integers(0, 65, (4, 16))) for _ in range(5)]
    masked = rng.integers(0, 65, (4, 16))
    masked[:, :12] = -1  # 16 of 64 targets count: this batch's mean is over those
    batches.insert(2, (rng.integers(0, 65, (4, 16)), masked))
    assert [n for _, _, n in joined(batches)] == [2, 1, 3]
    model = backend.model.eval()
    with torch.no_grad():
        each = [model(torch.from_numpy(x), torch.from_numpy(y))[1].item() for x, y in batches]
    assert backend.eval_loss(batches) == pytest.approx(sum(each) / len(each), rel=1e-6)
    assert backend.model.training  # back in training mode


def test_a_sharded_model_evaluates_every_batch_alone(tmp_path, monkeypatch):
    """Under FSDP every forward is a collective, so each rank must run as many as the others: a sharded model's
    evaluation never joins batches (whether chat batches join depends on each rank's own data)."""
    cfg = tiny_run(tmp_path)
    backend = TorchBackend()
    backend.setup(cfg.train)
    backend.build(cfg.model, cfg.train, None, "")
    calls = []
    forward = backend.model.forward
    monkeypatch.setattr(backend.model, "forward", lambda *a, **k: calls.append(a[0].shape) or forward(*a, **k))
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, (4, 16)), rng.integers(0, 65, (4, 16))) for _ in range(3)]
    joined_loss = backend.eval_loss(batches)
    assert calls == [(12, 16)]
    backend.sharded, calls[:] = True, []
    assert backend.eval_loss(batches) == pytest.approx(joined_loss, rel=1e-6)
    assert calls == [(4, 16)] * 3


def test_accumulation_equals_one_big_batch(tmp_path):
    # 2 micro-steps of 4 sequences == 1 step of 8 (sequential loader: the same 8 rows either way)
    big = trainer(tiny_run(tmp_path, "big", loader="sequential", batch_size=8, grad_clip=0.0))
    acc = trainer(tiny_run(tmp_path, "acc", loader="sequential", batch_size=4, total_batch_tokens=128, grad_clip=0.0))
    assert acc.accum == 2
    assert_same_gradients(acc, big, rel=1e-5)


def assert_same_gradients(acc, big, rel: float) -> None:
    """One step of each keeps its gradients (no update, no zeroing): they and the losses are equal."""
    for tr in (acc, big):
        for opt in tr.backend.optimizers.values():
            opt.step = lambda *a, **k: None
            opt.zero_grad = lambda *a, **k: None
    la, lb = float(acc.train_step()), float(big.train_step())
    for (name, pa), pb in zip(acc.backend.model.named_parameters(), big.backend.model.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert la == pytest.approx(lb, rel=rel)


def test_accumulated_step_updates_like_one_big_batch(tmp_path):
    big = trainer(tiny_run(tmp_path, "big", loader="sequential", batch_size=8, grad_clip=0.0))
    acc = trainer(tiny_run(tmp_path, "acc", loader="sequential", batch_size=4, total_batch_tokens=128, grad_clip=0.0))
    la, lb = float(acc.train_step()), float(big.train_step())
    assert la == pytest.approx(lb, rel=1e-5)
    for (name, pa), pb in zip(acc.backend.model.named_parameters(), big.backend.model.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5, msg=name)


def test_loss_falls_and_run_dir_contents(tmp_path):
    cfg = tiny_run(tmp_path, max_iters=40, eval_interval=20, eval_iters=4)
    result = train(cfg)
    run = tmp_path / "run"
    assert result.step == 40 and result.stopped == "done"
    assert result.evals[-1]["val_loss"] < result.evals[0]["val_loss"] - 0.3  # from ~ln 65 = 4.17
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 20, 40]
    assert {"step", "tokens", "elapsed_s", "train_loss", "val_loss", "lr"} <= records[0].keys()
    assert records[-1]["tokens"] == 40 * 4 * 16
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["vocab_size"] == 65 and saved["tokenizer"]["file"] == "tokenizer.model"
    tensors, meta = ckpt.read_checkpoint(run / rd.LAST, prefix="model.")
    assert meta["step"] == 40 and "lm_head.weight" not in tensors and "wte.weight" in tensors
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in tensors)
    model, _ = load_model(run, "best")
    assert model.config.vocab_size == 65


def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    # dropout on, so the torch RNG state must travel in the checkpoint too
    model = replace(tiny_run(tmp_path).model, dropout=0.1)
    full = train(replace(tiny_run(tmp_path, "full", max_iters=12, lr_decay_iters=12), model=model))
    part1 = train(replace(tiny_run(tmp_path, "split", max_iters=7, lr_decay_iters=12), model=model))
    assert part1.step == 7
    part2 = train(resume_config(tmp_path / "split", ["--max_iters=12"]), resume=True)
    assert part1.losses + part2.losses == full.losses  # bit for bit
    records = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 6, 7, 12]  # part 1 also evaluated where it stopped
    assert [r["val_loss"] for r in records if r["step"] != 7] == [e["val_loss"] for e in full.evals]


# The fields added since the run dirs of the previous version (issue 12's model options and Muon, chunked_loss,
# issue 13's head_dim): a run dir written before them has none of these keys, in config.json or in a checkpoint.
NEW_MODEL_FIELDS = ("pos", "rope_theta", "norm", "norm_eps", "qk_norm", "mlp", "mlp_hidden", "n_kv_head", "head_dim",
                    "logit_softcap", "zero_init_proj")
NEW_TRAIN_FIELDS = ("optimizer", "muon_lr", "muon_momentum", "chunked_loss", "muon_weight_decay", "ema_decay")


def strip_new_fields(run_dir) -> None:
    """Make a run dir look written by the version before NEW_MODEL_FIELDS / NEW_TRAIN_FIELDS: drop them from
    config.json and from the model and train configs in every checkpoint's metadata (the tensors are untouched)."""
    def strip(doc: dict) -> dict:
        model = {k: v for k, v in doc["model"].items() if k not in NEW_MODEL_FIELDS}
        return {**doc, "model": model, "train": {k: v for k, v in doc["train"].items() if k not in NEW_TRAIN_FIELDS}}

    path = run_dir / rd.CONFIG
    path.write_text(json.dumps(strip(json.loads(path.read_text())), indent=2))
    for name in (rd.LAST, rd.BEST):
        tensors, meta = ckpt.read_checkpoint(run_dir / name)
        ckpt.save_checkpoint(run_dir / name, tensors, strip(meta))
        _, meta = ckpt.read_checkpoint(run_dir / name)
        assert not (set(meta["model"]) & set(NEW_MODEL_FIELDS) or set(meta["train"]) & set(NEW_TRAIN_FIELDS))


def test_a_run_dir_without_the_new_fields_resumes_bit_exact(tmp_path):
    """Issue 12: old run dirs and checkpoints (no new fields) load and resume unchanged: the missing fields take
    their defaults, which are GPT-2's architecture and AdamW, so the losses are those of the uninterrupted run."""
    model = replace(tiny_run(tmp_path).model, dropout=0.1)
    full = train(replace(tiny_run(tmp_path, "full", max_iters=12, lr_decay_iters=12), model=model))
    part1 = train(replace(tiny_run(tmp_path, "split", max_iters=7, lr_decay_iters=12), model=model))
    strip_new_fields(tmp_path / "split")
    loaded, _ = load_model(tmp_path / "split", "last")
    assert loaded.config == model
    part2 = train(resume_config(tmp_path / "split", ["--max_iters=12"]), resume=True)
    assert part1.losses + part2.losses == full.losses  # bit for bit
    assert [e["val_loss"] for e in part2.evals] == [e["val_loss"] for e in full.evals[-1:]]


def test_ctrl_c_checkpoints_and_resumes(tmp_path):
    tr = trainer(tiny_run(tmp_path, max_iters=50, eval_interval=100))
    step = tr.train_step

    def step_then_ctrl_c():
        loss = step()
        if tr.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag; the step finishes
        return loss

    tr.train_step = step_then_ctrl_c
    result = tr.run()
    assert result.stopped == "interrupted" and result.step == 3
    _, meta = ckpt.read_checkpoint(tmp_path / "run" / rd.LAST)
    assert meta["step"] == 3
    assert train(resume_config(tmp_path / "run", ["--max_iters=5"]), resume=True).step == 5


def test_max_seconds_stops_with_an_eval(tmp_path):
    result = train(tiny_run(tmp_path, max_iters=10_000, eval_interval=10_000, max_seconds=0.5))
    assert result.stopped == "time" and 0 < result.step < 10_000 and result.evals[-1]["step"] == result.step
    again = train(resume_config(tmp_path / "run", []), resume=True)  # a resumed run gets its own time budget
    assert again.stopped == "time" and again.step > result.step


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    tr = trainer(tiny_run(tmp_path, max_iters=20, eval_interval=5))
    fwd = tr.backend.fwd

    def poisoned(x, y, **kw):
        logits, loss = fwd(x, y, **kw)
        return logits, loss * float("nan") if tr.step >= 7 else loss

    tr.backend.fwd = poisoned
    with pytest.raises(TrainingDiverged, match="at step 8"):
        tr.run()
    _, meta = ckpt.read_checkpoint(tmp_path / "run" / rd.LAST)
    assert meta["step"] == 5


def test_resume_refuses_a_changed_config(tmp_path):
    train(tiny_run(tmp_path, max_iters=6))
    with pytest.raises(ValueError, match="cannot change: lr, n_layer"):
        resume_config(tmp_path / "run", ["--n_layer=2", "--lr=1e-2"])
    other = replace(tiny_run(tmp_path), model=replace(tiny_run(tmp_path).model, n_embd=64))
    with pytest.raises(ValueError, match="another model config"):
        trainer(other, resume=True)


def test_truncated_checkpoint_is_a_clear_error_and_untouched(tmp_path):
    train(tiny_run(tmp_path, max_iters=6))
    path = tmp_path / "run" / rd.LAST
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        trainer(tiny_run(tmp_path, max_iters=12), resume=True)
    assert path.read_bytes() == data[: len(data) // 2]


@pytest.mark.parametrize("kw,match", [
    ({"device": "cuda"} if not torch.cuda.is_available() else {"device": "tpu"}, "device"),
    ({"dtype": "float16"}, "float16 training needs a GradScaler"),
    ({"total_batch_tokens": 100}, "not a multiple"),
    ({"data": "/nonexistent/data"}, "no such data dir"),
    ({"muon_weight_decay": -0.1}, "train.muon_weight_decay must be >= 0"),
])
def test_bad_train_input(tmp_path, kw, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        trainer(tiny_run(tmp_path, **kw))
    assert not (tmp_path / "run").exists()


def test_not_a_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run dir or folder, and not a GPT-2 name"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a gptkit run dir nor a HF model folder"):
        load_model(tmp_path / "empty")


def test_weights_from_another_config_name_the_tensor(tmp_path):
    from gptkit.torch.model import GPT
    from gptkit.torch.weights import load_weights, model_tensors

    a = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32))
    b = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match="wpe.weight has shape"):
        load_weights(b, model_tensors(a))
    c = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match=r"missing \['h.1"):
        load_weights(c, model_tensors(a))
    assert np.array_equal(model_tensors(a)["wte.weight"], a.wte.weight.detach().numpy())
    assert math.isfinite(float(model_tensors(a)["ln_f.weight"].sum()))


def test_a_fresh_run_never_replaces_another_unless_asked(tmp_path):
    train(tiny_run(tmp_path, max_iters=3, eval_interval=3))
    before = (tmp_path / "run" / rd.LAST).read_bytes()
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        train(tiny_run(tmp_path, max_iters=3, eval_interval=3))
    assert (tmp_path / "run" / rd.LAST).read_bytes() == before
    result = train(tiny_run(tmp_path, max_iters=3, eval_interval=3, lr=1e-2), overwrite=True)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert result.step == 3 and len(records) == 2  # steps 0 and 3 of the new run only


def test_resume_with_data_from_another_tokenizer(tmp_path):
    from gptkit.data.prepare import prepare

    train(tiny_run(tmp_path, max_iters=3, eval_interval=3))
    other = tmp_path / "other"
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij" * 500)
    prepare([str(text)], "char", other, progress=False)
    cfg = tiny_run(tmp_path, max_iters=6, eval_interval=3)
    with pytest.raises(ValueError, match="another tokenizer"):
        trainer(replace(cfg, train=replace(cfg.train, data=str(other))), resume=True)


def test_compile_wraps_the_training_step_only(tmp_path, monkeypatch):
    # backend="eager" runs torch.compile's graph capture without the minutes of inductor codegen
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: compile_(m, backend="eager"))
    tr = trainer(tiny_run(tmp_path, max_iters=4, eval_interval=2, compile=True, sample_tokens=5))
    assert tr.backend.fwd is not tr.backend.model and hasattr(tr.backend.fwd, "_orig_mod")
    result = tr.run()
    tensors, _ = ckpt.read_checkpoint(tmp_path / "run" / rd.LAST, prefix="model.")
    assert result.step == 4 and not any("_orig_mod" in k for k in tensors)
    rng = torch.get_rng_state()
    text = tr.sample_text()  # on the plain module, from its own generator
    assert text.startswith("\n") and len(text) == 1 + 5 and torch.equal(torch.get_rng_state(), rng)


def test_attention_path_for_training():
    # a CPU at short contexts: the explicit path (torch's CPU flash backward is slower there, see attention_for's
    # docstring); longer contexts and GPUs keep SDPA
    from gptkit.torch.backend import attention_for

    cpu, bf16, fp32 = torch.device("cpu"), torch.bfloat16, torch.float32
    assert attention_for(cpu, bf16, 64) == attention_for(cpu, bf16, 128) == attention_for(cpu, fp32, 64) == "explicit"
    assert attention_for(cpu, bf16, 256) == attention_for(cpu, fp32, 256) == "sdpa"
    assert attention_for(torch.device("cuda"), bf16, 64) == attention_for(torch.device("cuda"), fp32, 64) == "sdpa"


FAULTS = """
import resource, sys, torch
if sys.argv[1] == "kept":
    from gptkit.torch.runtime import keep_freed_memory
    assert keep_freed_memory()
for _ in range(5):  # warm up: torch's own first allocations
    torch.ones(512, 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    torch.ones(512, 1024)  # 2 MiB, allocated, written and freed, as a training step's activations are
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_freed_activations_are_reused_without_page_faults():
    """keep_freed_memory (which CPU training runs through setup_threads): 50 tensors of 2 MiB allocated and freed in
    turn reuse the same memory, with no page fault after the warm-up. Without it glibc unmaps freed blocks above its
    mmap threshold and trims the heap's free top (man mallopt: M_MMAP_THRESHOLD starts at 128 KiB, M_TRIM_THRESHOLD),
    so fresh zeroed pages (512 of 4 KiB in 2 MiB) are faulted in again on later allocations."""
    faults = {how: int(subprocess.run([sys.executable, "-c", FAULTS, how], capture_output=True, text=True,
                                      check=True).stdout) for how in ("plain", "kept")}
    assert faults["plain"] >= 512, faults  # the premise: glibc as it comes faults a 2 MiB block's pages in again
    assert faults["kept"] < 64, faults
