"""A conversation as a generation request, for every front end that chats (`gptkit chat`, the server's
/v1/chat/completions and its Chat tab): the prompt ids of the conversation so far in the model's chat format, ending
with the assistant's header, and the tokens that end the reply. Framework-free.

`chat_prompt` keeps a conversation inside the context: `gptkit chat` drops the oldest whole turns (the system
message stays) until the prompt and the reply's room fit; the server refuses instead (OpenAI's
context_length_exceeded), with keep_within=False.
"""

from __future__ import annotations

from gptkit.tokenizer.chat import ChatFormat, encode_chat

NO_FORMAT = ("has no chat format: it is a base model, which continues text. Finetune it on conversations first "
             "(`gptkit train --init_from MODEL --data reverse`, or the `chat` preset), or continue text with "
             "`gptkit sample`")


class ContextFull(ValueError):
    """The conversation does not fit the model's context (with room for the reply)."""


def stop_tokens(tok, fmt: ChatFormat) -> tuple[int, ...]:
    """The ids that end a reply: the format's end of turn (one token), and the tokenizer's end of text."""
    end = tok.encode(fmt.end_of_turn, allowed_special="all")
    if len(end) != 1:
        raise ValueError(f"the chat format's end of turn {fmt.end_of_turn!r} is not one token of this tokenizer")
    return tuple(dict.fromkeys([end[0], *([] if tok.eot_token is None else [tok.eot_token])]))


def end_of_generation(tok, fmt: ChatFormat | None) -> int | None:
    """The id that ends what a model generates: a chat model's end of turn, else the tokenizer's end of text (what
    exports write as eos)."""
    return stop_tokens(tok, fmt)[0] if fmt is not None else tok.eot_token


def chat_prompt(tok, fmt: ChatFormat, messages: list[dict], block_size: int, reply_room: int = 1,
                keep_within: bool = True) -> tuple[list[int], list[dict]]:
    """(prompt ids, the messages they hold): the conversation rendered with the assistant's header, fitting `block_size`
    with `reply_room` tokens to spare. With keep_within, the oldest messages after any system ones are dropped,
    a user turn and what follows it up to the next user turn at a time (the last user turn always stays, with less
    room for its reply if need be); else ContextFull at once.

    Example: a 64-token context, 30 tokens of history, reply_room 16 -> every message kept."""
    room = block_size - max(1, min(reply_room, block_size - 1))
    system = list(messages[:1]) if messages and messages[0]["role"] == "system" else []
    rest = list(messages[len(system):])
    while True:
        ids, _ = encode_chat(tok, fmt, system + rest, add_generation_prompt=True)
        if len(ids) <= room:
            return ids, system + rest
        users = [k for k, m in enumerate(rest) if m["role"] == "user"]
        if keep_within and len(users) < 2 and len(ids) < block_size:
            return ids, system + rest  # nothing more to drop: the reply gets the room there is (then the window slides)
        if not keep_within or len(users) < 2:
            raise ContextFull(f"the conversation is {len(ids)} tokens; this model's context is {block_size} tokens "
                              f"with {block_size - room} kept for the reply")
        rest = rest[users[1]:]
