"""gptkit.generate.chat: the prompt every chat front end sends, kept inside the context the way `gptkit chat` does
(oldest whole turns dropped, the system message kept, the last user turn always kept) or refused as the server does."""

import pytest

from gptkit import CharTokenizer
from gptkit.generate.chat import ContextFull, chat_prompt, stop_tokens
from gptkit.tokenizer.chat import IM_END, IM_START, ChatFormat, encode_chat

CHATML = ChatFormat.chatml()


@pytest.fixture(scope="module")
def tok(shakespeare):
    return CharTokenizer.train(shakespeare).with_special_tokens([IM_START, IM_END])


def _turns(n):
    out = [{"role": "system", "content": "Be brief."}]
    for k in range(n):
        out += [{"role": "user", "content": f"Say {'a' * (k + 1)}."}, {"role": "assistant", "content": "ok"}]
    return out[:-1]  # ends with the user's turn


def test_a_conversation_that_fits_is_rendered_whole(tok):
    messages = _turns(2)
    ids, kept = chat_prompt(tok, CHATML, messages, block_size=256, reply_room=16)
    assert (ids, kept) == (encode_chat(tok, CHATML, messages, add_generation_prompt=True)[0], messages)


def test_the_oldest_whole_turns_go_first_and_the_system_message_stays(tok):
    messages = _turns(4)
    whole = len(encode_chat(tok, CHATML, messages, add_generation_prompt=True)[0])
    ids, kept = chat_prompt(tok, CHATML, messages, block_size=whole + 16 - 1, reply_room=16)  # one token short
    assert kept == [messages[0], *messages[3:]]  # the first exchange dropped, the system message kept
    assert ids == encode_chat(tok, CHATML, kept, add_generation_prompt=True)[0]
    assert kept[1] == {"role": "user", "content": "Say aa."}  # a user turn starts what is kept


def test_the_last_user_turn_stays_with_less_room_for_the_reply(tok):
    messages = _turns(1)
    n = len(encode_chat(tok, CHATML, messages, add_generation_prompt=True)[0])
    assert chat_prompt(tok, CHATML, messages, block_size=n + 1, reply_room=16)[1] == messages
    with pytest.raises(ContextFull, match=f"is {n} tokens; this model's context is {n} tokens"):
        chat_prompt(tok, CHATML, messages, block_size=n, reply_room=16)


def test_the_server_refuses_instead_of_dropping(tok):
    messages = _turns(3)
    n = len(encode_chat(tok, CHATML, messages, add_generation_prompt=True)[0])
    assert chat_prompt(tok, CHATML, messages, block_size=n + 1, keep_within=False)[1] == messages
    with pytest.raises(ContextFull, match="with 1 kept for the reply"):
        chat_prompt(tok, CHATML, messages, block_size=n, keep_within=False)


def test_a_reply_ends_at_the_end_of_turn_and_at_end_of_text(tok, gpt2_tok):
    assert stop_tokens(tok, CHATML) == (tok.special_tokens[IM_END],)  # a char vocabulary has no <|endoftext|>
    chat_gpt2 = gpt2_tok.with_special_tokens([IM_START, IM_END])
    assert stop_tokens(chat_gpt2, CHATML) == (chat_gpt2.special_tokens[IM_END], 50256)
