"""OpenAI's published encodings, GPT-2 (r50k_base) and cl100k_base, giving tiktoken's exact ids: their split
patterns, special tokens and ranks, as data that gptkit.tokenizer.byte_level.Tokenizer.from_pretrained builds a
tokenizer from.

Files are found in $GPTKIT_DATA (laid out like the repository's shared/data: gpt2/encoder.json,
gpt2/vocab.bpe or gpt2/gpt2.tiktoken, cl100k/cl100k_base.tiktoken), then the user cache, else downloaded
from OpenAI's public URLs and checked against their sha256 (see `gptkit.files.find_reference_file`).

Not here: the encoding algorithm itself, which is the one `Tokenizer` uses for every vocabulary.
"""

from __future__ import annotations

import json

from gptkit.files import RefFile, find_reference_file
from gptkit.tokenizer.formats import read_tiktoken_ranks

# GPT-2's pre-tokenizer (as in tiktoken's r50k_base) and GPT-4's (cl100k_base).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}
ENDOFTEXT = "<|endoftext|>"

_GPT2_BASE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
GPT2_ENCODER = RefFile(
    "gpt2/encoder.json", _GPT2_BASE + "encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
)
GPT2_VOCAB_BPE = RefFile(
    "gpt2/vocab.bpe", _GPT2_BASE + "vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
)
# The same ranks in tiktoken's format; OpenAI publishes no URL for it, so it is only used when present.
GPT2_TIKTOKEN = RefFile("gpt2/gpt2.tiktoken", "", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
CL100K = RefFile(
    "cl100k/cl100k_base.tiktoken",
    "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
)
CL100K_SPECIALS = {
    ENDOFTEXT: 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (used in encoder.json and vocab.bpe).

    Printable Latin-1 bytes map to themselves; the other 68 map to chr(256), chr(257), ... in order.
    Example: 33 ('!') -> '!', 32 (space) -> 'Ġ' (chr(288)), 10 (newline) -> 'Ċ' (chr(266))
    """
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2_ranks_from_data_gym(vocab_bpe: str, encoder_json: str) -> dict[bytes, int]:
    """GPT-2's ranks from vocab.bpe (the merge order), checked against encoder.json's ids."""
    byte_encoder = bytes_to_unicode()
    byte_decoder = {c: b for b, c in byte_encoder.items()}
    ranks = {bytes([b]): i for i, b in enumerate(byte_encoder)}  # the first 256 ranks, in the map's order
    with open(vocab_bpe, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines[0].startswith("#version"):
        raise ValueError(f"{vocab_bpe}:1: not a GPT-2 vocab.bpe (expected a '#version' line)")
    for lineno, line in enumerate(lines[1:], 2):
        if not line:
            continue
        try:
            a, b = line.split(" ")
            ranks[bytes(byte_decoder[c] for c in a + b)] = len(ranks)
        except (ValueError, KeyError):
            raise ValueError(f"{vocab_bpe}:{lineno}: not a merge line ('first second'): {line[:60]!r}") from None
    with open(encoder_json, encoding="utf-8") as f:
        encoder = json.load(f)
    encoder.pop(ENDOFTEXT, None)
    try:
        from_json = {bytes(byte_decoder[c] for c in tok): i for tok, i in encoder.items()}
    except KeyError:
        raise ValueError(f"{encoder_json}: a token uses a character outside GPT-2's byte map") from None
    if from_json != ranks:
        raise ValueError(f"{encoder_json} and {vocab_bpe} disagree; are they from the same GPT-2 release?")
    return ranks


def _gpt2() -> dict:
    try:
        path = find_reference_file(GPT2_TIKTOKEN, download=None)
        ranks = read_tiktoken_ranks(path)
    except FileNotFoundError:
        vocab_bpe = find_reference_file(GPT2_VOCAB_BPE)
        encoder = find_reference_file(GPT2_ENCODER)
        ranks = gpt2_ranks_from_data_gym(str(vocab_bpe), str(encoder))
    return dict(ranks=ranks, pattern=GPT2_PATTERN, special_tokens={ENDOFTEXT: 50256}, name="gpt2")


def _cl100k() -> dict:
    ranks = read_tiktoken_ranks(find_reference_file(CL100K))
    return dict(ranks=ranks, pattern=GPT4_PATTERN, special_tokens=CL100K_SPECIALS, name="cl100k_base")


PRETRAINED = {"gpt2": _gpt2, "r50k_base": _gpt2, "cl100k_base": _cl100k}


def pretrained_encoding(name: str) -> dict:
    """Tokenizer(**...) arguments of a published encoding: ranks, pattern, special_tokens, name."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained tokenizer {name!r}; choose one of {', '.join(PRETRAINED)}")
    return PRETRAINED[name]()
