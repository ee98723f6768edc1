"""`gptkit chat` (issue 25): a multi-turn conversation in the terminal, each reply the model's own continuation of
the conversation in its chat format (checked against the engine given encode_chat's prompt), the commands, the
oldest turns dropped past the context (said once), Ctrl-C stopping a reply only, and a base model refused."""

import io
import sys

import pytest

from gptkit.cli import main
from gptkit.generate.engine import Request
from gptkit.tokenizer.chat import ChatFormat, encode_chat


def _reply(run, messages, max_new=20, seed=1337, temperature=0.0):
    """The reply the model gives to `messages`: the engine on encode_chat's prompt, cut at <|im_end|>."""
    from gptkit.generate.text import generate_text
    from gptkit.torch.generate import Engine
    from gptkit.torch.weights import load_model

    model, src = load_model(run, "auto", "cpu")
    tok = src.load_tokenizer()
    ids, _ = encode_chat(tok, ChatFormat.chatml(), messages, add_generation_prompt=True)
    request = Request(tuple(ids), max_new, temperature, None, None, seed, (tok.special_tokens["<|im_end|>"],))
    return "".join(t for _, t, _ in generate_text(Engine(model, 1), tok, [request]))


def _chat(monkeypatch, capsys, run, lines, *flags):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    rc = main(["chat", str(run), "--max-new-tokens", "20", *flags])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_each_reply_continues_the_conversation_so_far(chat_run, monkeypatch, capsys):
    rc, out, _ = _chat(monkeypatch, capsys, chat_run, ["Reverse: night", "Reverse: crown"], "--temperature", "0")
    first = [{"role": "user", "content": "Reverse: night"}]
    one = _reply(chat_run, first)
    second = first + [{"role": "assistant", "content": one}, {"role": "user", "content": "Reverse: crown"}]
    assert rc == 0 and one and out == f"{one}\n{_reply(chat_run, second)}\n"


def test_sampled_replies_use_the_seed_and_system_and_reset_start_anew(chat_run, monkeypatch, capsys):
    lines = ["/system Be brief.", "Reverse: night", "/reset", "Reverse: night", "/bogus", "/exit", "never read"]
    rc, out, err = _chat(monkeypatch, capsys, chat_run, lines, "--seed", "7", "--temperature", "0.9")
    reply = _reply(chat_run, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse: night"}],
                   seed=7, temperature=0.9)
    assert rc == 0 and out == f"{reply}\n{reply}\n"  # /reset keeps the system message; every reply has the seed
    assert "unknown command '/bogus'" in err and "(a new conversation)" in err


def test_the_oldest_turns_are_dropped_past_the_context_and_said_once(chat_run, monkeypatch, capsys):
    rc, out, err = _chat(monkeypatch, capsys, chat_run, [f"Reverse: {w}" for w in ("a", "bb", "cc", "dd", "ee")],
                         "--temperature", "0")
    assert rc == 0 and err.count("outgrew the model's context of 128 tokens") == 1


def test_ctrl_c_stops_the_reply_not_the_program(chat_run, monkeypatch, capsys):
    from gptkit.generate import text

    real = text.generate_text

    def interrupted(engine, tok, requests, stop=None):
        for k, item in enumerate(real(engine, tok, requests, stop)):
            if k == 1 and len(interrupted.calls) == 0:
                interrupted.calls.append(1)
                raise KeyboardInterrupt
            yield item

    interrupted.calls = []
    monkeypatch.setattr(text, "generate_text", interrupted)
    rc, out, err = _chat(monkeypatch, capsys, chat_run, ["Reverse: night", "Reverse: crown"], "--temperature", "0")
    assert rc == 0 and err.count("[stopped]") == 1 and out.count("\n") >= 2  # the second turn was answered


def test_a_base_model_is_refused_saying_what_to_do(tmp_path, capsys):
    tiny = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--eval_iters=1", "--progress=false",
            "--sample_tokens=0"]
    assert main(["train", *tiny, "--max_iters=1", "--eval_interval=1", f"--out_dir={tmp_path / 'base'}"]) == 0
    capsys.readouterr()
    assert main(["chat", str(tmp_path / "base")]) == 1
    err = capsys.readouterr().err
    assert "has no chat format: it is a base model" in err and "gptkit sample" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flags,words", [(["--temperature", "3"], "--temperature must be"),
                                         (["--top-p", "0"], "--top-p must be"), (["--system", " "], "--system needs")])
def test_bad_flags_are_one_line(chat_run, capsys, flags, words):
    assert main(["chat", str(chat_run), *flags]) == 1
    assert words in capsys.readouterr().err
