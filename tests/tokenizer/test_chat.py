"""Chat formats (gptkit.tokenizer.chat): ChatML rendered by gptkit equals its Jinja template, and a conversation's ids
equal transformers' apply_chat_template(tokenize=True) for ChatML and for templates in the formats of public model
cards (written here); the loss mask covers exactly the assistant's content and end-of-turn token, as transformers'
own assistant mask does for a template with {% generation %} tags."""

import json

import pytest

from gptkit import Tokenizer
from gptkit.tokenizer.chat import CHATML_TEMPLATE, IM_END, IM_START, ChatFormat, check_messages, encode_chat

transformers = pytest.importorskip("transformers", reason="the reference (a dev dependency)")
tokenizers = pytest.importorskip("tokenizers", reason="the reference (a dev dependency)")

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3, in words?"},
     {"role": "assistant", "content": " six.\n\nDone — é 🎉"}],
    [{"role": "user", "content": "Only a question"}],
]
# The formats of public model cards, written here: Llama 3's header tokens and Zephyr's role tags.
LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
          "m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
          "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
FORMATS = {  # name -> (gptkit's format, the template transformers renders, the special tokens the tokenizer needs)
    "chatml": (ChatFormat.chatml(), CHATML_TEMPLATE, [IM_START, IM_END]),
    "chatml-jinja": (ChatFormat(CHATML_TEMPLATE, IM_END), CHATML_TEMPLATE, [IM_START, IM_END]),
    "llama3": (ChatFormat(LLAMA3, "<|eot_id|>", (("bos_token", "<|begin_of_text|>"),)), LLAMA3,
               ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "zephyr": (ChatFormat(ZEPHYR, "<|endoftext|>", (("eos_token", "<|endoftext|>"),)), ZEPHYR, ["<|endoftext|>"]),
}


def _with_specials(base: Tokenizer, tokens: list[str]) -> Tokenizer:
    specials = dict(base.special_tokens)
    for t in tokens:
        specials.setdefault(t, max([*specials.values(), len(base.mergeable_ranks) - 1]) + 1)
    return Tokenizer(base.mergeable_ranks, base.pattern, specials)


def _hf(tok: Tokenizer, template: str, variables: dict):
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer.from_str(
        json.dumps(tok.to_tokenizer_json())), **variables)
    hf.chat_template = template
    return hf


def test_chatml_text_golden():
    # ChatML as Qwen's and SmolLM2's model cards show it
    text = ChatFormat.chatml().render(CONVERSATIONS[0], add_generation_prompt=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    assert ChatFormat.chatml().render(CONVERSATIONS[2], True).endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("k", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_ids_equal_transformers_apply_chat_template(gpt2_tok, name, k, generation_prompt):
    fmt, template, tokens = FORMATS[name]
    tok = _with_specials(gpt2_tok, tokens)
    messages = CONVERSATIONS[k]
    if not generation_prompt and messages[-1]["role"] != "assistant":
        return _assert_nothing_to_learn(tok, fmt, messages)
    ids, mask = encode_chat(tok, fmt, messages, add_generation_prompt=generation_prompt)
    hf = _hf(tok, template, dict(fmt.variables))
    want = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    want = want["input_ids"] if hasattr(want, "keys") else want  # transformers 5: a BatchEncoding
    assert ids == list(want) and len(mask) == len(ids)
    if generation_prompt:
        assert not any(mask)


def _assert_nothing_to_learn(tok, fmt, messages):
    ids, mask = encode_chat(tok, fmt, messages)  # no assistant turn: nothing to learn from
    assert ids and not any(mask)


@pytest.mark.parametrize("name", ["chatml", "llama3"])
def test_the_mask_is_the_assistant_content_and_its_end_of_turn(gpt2_tok, name):
    fmt, _, tokens = FORMATS[name]
    tok = _with_specials(gpt2_tok, tokens)
    ids, mask = encode_chat(tok, fmt, CONVERSATIONS[1])
    masked = tok.decode([i for i, m in zip(ids, mask) if m])
    eot, reply = fmt.end_of_turn, " six.\n\nDone — é 🎉" if name == "chatml" else "six.\n\nDone — é 🎉"  # llama3 trims
    assert masked == "4" + eot + reply + eot
    runs = "".join(str(m) for m in mask).strip("0").split("0")
    assert [r for r in runs if r] == ["11", "1" * len(tok.encode(reply)) + "1"]


def test_the_mask_equals_transformers_assistant_mask(gpt2_tok):
    """transformers computes its own mask from {% generation %} tags; gptkit finds the spans by rendering."""
    tagged = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' %}"
              "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}{{ m['content'] + "
              "'<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|im_start|>assistant\\n' }}{% endif %}")
    tok = _with_specials(gpt2_tok, [IM_START, IM_END])
    for messages in CONVERSATIONS[:2]:
        ids, mask = encode_chat(tok, ChatFormat(tagged, IM_END), messages)
        want = _hf(tok, tagged, {}).apply_chat_template(messages, tokenize=True, return_dict=True,
                                                         return_assistant_tokens_mask=True)
        assert ids == list(want["input_ids"]) and mask == list(want["assistant_masks"])


@pytest.mark.parametrize("messages,words", [
    ("hi", "non-empty list"),
    ([], "non-empty list"),
    ([{"role": "robot", "content": "x"}], "role 'robot'"),
    ([{"role": "user", "content": ""}], "no text"),
    ([{"role": "user", "content": ["parts"]}], "no text"),
    ([{"role": "user"}], "no text"),
])
def test_malformed_messages_are_refused_in_one_line(messages, words):
    with pytest.raises(ValueError, match=words):
        check_messages(messages)


def test_what_cannot_be_done_exactly_is_refused(gpt2_tok):
    with pytest.raises(ValueError, match="no <|im_start|>, <|im_end|> token"):
        encode_chat(gpt2_tok, ChatFormat.chatml(), CONVERSATIONS[0])
    rewriting = "{% for m in messages %}{{ m['content'] if loop.last else m['content'][:1] }}|{% endfor %}"
    with pytest.raises(ValueError, match="renders earlier turns differently"):
        encode_chat(gpt2_tok, ChatFormat(rewriting, "|"), CONVERSATIONS[1])
    with pytest.raises(ValueError, match="not valid Jinja"):
        encode_chat(gpt2_tok, ChatFormat("{% for %}", "|"), CONVERSATIONS[0])
    refusing = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(ValueError, match="roles must alternate"):
        encode_chat(gpt2_tok, ChatFormat(refusing, "|"), CONVERSATIONS[0])
