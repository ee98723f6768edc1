"""Conversations as token ids: a list of messages (system, user, assistant) rendered in a chat format and tokenized,
with a loss mask that is 1 exactly on what the assistant says (its content and its end-of-turn token), and the
prompt form that ends with the assistant's header, for generation.

Two kinds of format behind one interface (`ChatFormat.render(messages, add_generation_prompt)`):
- ChatML, gptkit's default: `<|im_start|>role\\ncontent<|im_end|>\\n`, the format of Qwen and SmolLM2, which llama.cpp,
  Ollama and LM Studio know. Rendered here, with no dependency; CHATML_TEMPLATE is the same format as a Jinja
  template, for HF exports.
- a Hugging Face folder's own `chat_template` (Jinja), rendered with jinja2 as transformers renders it (a sandboxed
  environment with trim_blocks and lstrip_blocks, `raise_exception`, `strftime_now`, a `tojson` that does not
  escape HTML, and the tokenizer's special tokens as variables); jinja2 is the optional `chat` extra.

The assistant spans are found exactly, by rendering, not by searching the text: assistant message i's span starts
where the conversation before it, rendered with the generation prompt, ends, and ends where the conversation
through it ends (cut after its last end-of-turn token, so a newline the format puts after it stays unmasked). A
template for which the earlier turns are not a prefix of the later ones (one that rewrites history) is refused.
The tokens come from tokenizing the whole text at once, as transformers' apply_chat_template(tokenize=True) does;
a token is masked when its bytes lie inside an assistant span.

Not here: reading chat files (gptkit.data), training on them, or extending a vocabulary with the chat tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# ChatML as a Jinja template: what gptkit writes beside an export, and what ChatFormat.chatml() renders without jinja2.
CHATML_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                   "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                   "{% endif %}")


def check_messages(messages) -> list[dict]:
    """The messages as [{"role", "content"}], or ValueError naming what is wrong: not a list, an unknown role, content
    that is not a non-empty string. Example: [{"role": "user", "content": "hi"}] -> the same list"""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {\"role\", \"content\"} objects")
    out = []
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {k} is not an object with 'role' and 'content'")
        if m.get("role") not in ROLES:
            raise ValueError(f"message {k} has role {m.get('role')!r}; the roles are {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str) or not m["content"]:
            raise ValueError(f"message {k} ({m['role']}) has no text: content must be a non-empty string")
        out.append({"role": m["role"], "content": m["content"]})
    return out


@dataclass(frozen=True)
class ChatFormat:
    """A chat format: `template` (Jinja source; None for gptkit's built-in ChatML), the end-of-turn token string that
    closes an assistant turn, and the special tokens a template may name (bos_token, eos_token, ...)."""

    template: str | None
    end_of_turn: str
    variables: tuple[tuple[str, str], ...] = ()

    @classmethod
    def chatml(cls) -> ChatFormat:
        return cls(None, IM_END)

    def record(self) -> dict:
        """The format as JSON, as data and run dirs record it. Example: ChatML -> {"template": None, "end_of_turn":
        "<|im_end|>", "variables": {}}"""
        return {"template": self.template, "end_of_turn": self.end_of_turn, "variables": dict(self.variables)}

    @classmethod
    def from_record(cls, record: dict) -> ChatFormat:
        return cls(record.get("template"), record["end_of_turn"], tuple(sorted(record.get("variables", {}).items())))

    @classmethod
    def from_hf_folder(cls, folder) -> ChatFormat | None:
        """The chat format a Hugging Face folder ships, or None: its `chat_template.jinja` (where transformers 4.43+
        saves it), else tokenizer_config.json's `chat_template` (a string, or a list of named ones: "default"); the
        end of a turn is the tokenizer's eos_token, and the special tokens are the template's variables."""
        from pathlib import Path

        folder = Path(folder)
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            config = {}
        except (OSError, ValueError) as e:
            raise ValueError(f"{folder}/tokenizer_config.json: not readable JSON ({e})") from None
        template = config.get("chat_template") if isinstance(config, dict) else None
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(template, list):
            template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                            None)
        if not isinstance(template, str) or not template.strip():
            return None
        variables = {}
        for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = config.get(name)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                variables[name] = value
        if "eos_token" not in variables:
            raise ValueError(f"{folder}: the chat template's turns need an end, but tokenizer_config.json names no "
                             "eos_token")
        return cls(template, variables["eos_token"], tuple(sorted(variables.items())))

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as text (with the assistant's header at the end when add_generation_prompt)."""
        if self.template is None:
            text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
            return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")
        import jinja2

        try:
            return _jinja(self.template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                                **dict(self.variables))
        except jinja2.TemplateError as e:
            raise ValueError(f"the chat template failed on this conversation: {e}") from None

    def assistant_spans(self, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
        """(the rendered conversation, the character span of each assistant turn: content and end-of-turn token)."""
        text, spans = self.render(messages), []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = len(self.render(messages[:i], add_generation_prompt=True))
            through = self.render(messages[: i + 1])
            if not (text.startswith(through) and through.startswith(text[:start])):
                raise ValueError("this chat template renders earlier turns differently once later ones follow, so the "
                                 "assistant's part cannot be found exactly; use gptkit's ChatML")
            end = through.rfind(self.end_of_turn, start)
            spans.append((start, end + len(self.end_of_turn) if end >= 0 else len(through)))
        return text, spans


def encode_chat(tok, fmt: ChatFormat, messages, add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """(token ids, loss mask) of a conversation: the mask is 1 on the tokens of each assistant turn's content and its
    end-of-turn token, 0 elsewhere. With add_generation_prompt the ids end with the assistant's header (no mask use).

    Example (ChatML, GPT-2's BPE plus the ChatML tokens): [user "Hi", assistant "Yo"] -> ids of
    "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nYo<|im_end|>\\n", mask 1 on "Yo" and <|im_end|> only.
    """
    messages = check_messages(messages)
    missing = [t for t in _needed(fmt) if t not in tok.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer has no {', '.join(missing)} token; add the chat tokens to it first")
    if add_generation_prompt:
        text, spans = fmt.render(messages, add_generation_prompt=True), []
    else:
        text, spans = fmt.assistant_spans(messages)
    ids = tok.encode(text, allowed_special="all")
    pieces = [tok.decode_bytes([i]) for i in ids]
    if b"".join(pieces) != text.encode("utf-8"):
        raise ValueError("this tokenizer does not give back the text it encodes (a word tokenizer?); chat needs a "
                         "byte-level BPE or char tokenizer")
    byte_spans = [(len(text[:a].encode("utf-8")), len(text[:b].encode("utf-8"))) for a, b in spans]
    mask, at = [], 0
    for piece in pieces:
        inside = any(a <= at and at + len(piece) <= b for a, b in byte_spans)
        mask.append(int(inside))
        at += len(piece)
    return ids, mask


def _needed(fmt: ChatFormat) -> tuple[str, ...]:
    return (IM_START, IM_END) if fmt.template is None else ()


_TEMPLATES: dict[str, object] = {}


def _jinja(source: str):
    """A compiled chat template, in the environment transformers renders templates in (see the module docstring)."""
    if source not in _TEMPLATES:
        try:
            import jinja2
            from jinja2.ext import Extension, loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ValueError('a model\'s own chat template needs jinja2: pip install "gptkit[chat]"') from None

        class Generation(Extension):  # `{% generation %}...{% endgeneration %}` (transformers' mask tags): the body
            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

            def _body(self, caller):
                return caller()

        def raise_exception(message):
            raise ValueError(f"the chat template refused the conversation: {message}")

        def strftime_now(fmt):
            import datetime

            return datetime.datetime.now().strftime(fmt)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
        env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
        env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
        try:
            _TEMPLATES[source] = env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"the chat template is not valid Jinja (line {e.lineno}: {e.message})") from None
    return _TEMPLATES[source]
