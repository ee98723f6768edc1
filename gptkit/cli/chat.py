"""`gptkit chat MODEL`: a conversation with a chat model in the terminal.

Each line typed is a user turn; the reply streams in, sampled with `gptkit sample`'s flags (--stop included; every
reply with --seed, so a reply equals the server's /v1/chat/completions for the same conversation and settings).
Commands: /reset (a new conversation), /system TEXT (set the system message and start anew), /exit (or Ctrl-D).
Ctrl-C stops the reply being written (what was written stays in the conversation); at the prompt it ends the program.
When the conversation outgrows the context, its oldest whole turns are dropped (said once). A model without a chat
format (a base model) is refused with what to do instead.
"""

from __future__ import annotations

import sys

from gptkit.cli.common import add_checkpoint, add_device, add_quantize, need_torch
from gptkit.cli.sample import add_sampling, check_sampling_flags

HELP = "/reset: a new conversation  /system TEXT: a new one with this system message  /exit: quit (or Ctrl-D)"


def add_chat_command(sub) -> None:
    p = sub.add_parser("chat", help="talk to a chat model (finetuned on conversations) in the terminal",
                       description="Talk to a chat model: a run finetuned on conversations, or an HF folder with a "
                       "chat template. " + HELP)
    p.add_argument("model", metavar="MODEL", help="a `gptkit train` run dir, an HF folder, or a GPT-2 name")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message to start with")
    add_sampling(p, max_new_tokens=256, seed_help="the seed of every reply (default: 1337)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end a reply before this text (repeatable); the end of the assistant's turn always ends one")
    add_device(p)
    add_checkpoint(p)
    add_quantize(p)
    p.set_defaults(func=cmd_chat)


def cmd_chat(args) -> int:
    check_sampling_flags(args)
    if args.system is not None and not args.system.strip():
        raise ValueError("--system needs a text")
    if any(not s for s in args.stop):
        raise ValueError("--stop needs a non-empty text")
    need_torch("chat")
    from gptkit.generate.chat import NO_FORMAT
    from gptkit.torch.generate import Engine
    from gptkit.torch.quantize import prepare_for_decoding
    from gptkit.torch.runtime import pick_device
    from gptkit.torch.weights import load_model

    model, src = load_model(args.model, args.checkpoint or "auto", pick_device(args.device))
    fmt = src.chat_format()
    if fmt is None:
        raise ValueError(f"{args.model} {NO_FORMAT}")
    engine = Engine(prepare_for_decoding(model, 1, "auto", args.quantize), 1, sync_every=1)
    Chat(engine, src.load_tokenizer(), fmt, src.config.block_size, args).loop()
    return 0


class Chat:
    """The conversation and the loop that reads turns and streams replies."""

    def __init__(self, engine, tok, fmt, block_size: int, args) -> None:
        from gptkit.generate.chat import stop_tokens

        self.engine, self.tok, self.fmt, self.block, self.args = engine, tok, fmt, block_size, args
        self.stops = stop_tokens(tok, fmt)
        self.system = args.system
        self.messages = self._start()
        self.told_dropping = False

    def _start(self) -> list[dict]:
        return [{"role": "system", "content": self.system}] if self.system else []

    def loop(self) -> None:
        tty = sys.stdin.isatty()
        if tty:
            print(f"gptkit chat: {HELP}", file=sys.stderr)
        while True:
            try:
                line = input("you> " if tty else "")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return
            line = line.strip()
            if not line:
                continue
            if line.startswith("/") and not self._command(line):
                return
            if not line.startswith("/"):
                self._turn(line)

    def _command(self, line: str) -> bool:
        """Do a /command; False to end the program."""
        name, _, rest = line.partition(" ")
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.messages = self._start()
            print("(a new conversation)", file=sys.stderr)
        elif name == "/system" and rest.strip():
            self.system = rest.strip()
            self.messages = self._start()
            print("(a new conversation with this system message)", file=sys.stderr)
        else:
            print(f"unknown command {line!r}; {HELP}", file=sys.stderr)
        return True

    def _turn(self, text: str) -> None:
        """A user turn and the model's reply, streamed to stdout."""
        from gptkit.generate.chat import ContextFull, chat_prompt
        from gptkit.generate.engine import Request
        from gptkit.generate.text import generate_text

        self.messages.append({"role": "user", "content": text})
        try:
            ids, kept = chat_prompt(self.tok, self.fmt, self.messages, self.block,
                                    min(self.args.max_new_tokens, self.block // 4))
        except (ContextFull, ValueError) as e:
            self.messages.pop()
            print(f"gptkit: {e}; say something shorter, or /reset", file=sys.stderr)
            return
        if len(kept) < len(self.messages):
            self.messages = kept
            if not self.told_dropping:
                print(f"(the conversation outgrew the model's context of {self.block} tokens: its oldest turns are "
                      "dropped from now on)", file=sys.stderr)
                self.told_dropping = True
        a = self.args
        request = Request(tuple(ids), a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.seed, self.stops)
        reply = []
        try:
            for _, piece, _ in generate_text(self.engine, self.tok, [request], [a.stop]):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:  # stop this reply, keep the program
            self.engine.cancel(0)
            print(" [stopped]", end="", file=sys.stderr)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if "".join(reply).strip():
            self.messages.append({"role": "assistant", "content": "".join(reply)})
