"""Hugging Face `tokenizer.json` as plain data, both ways: the byte-level BPE kind (GPT-2, GPT-4, Llama 3, Qwen:
a split regex, GPT-2's byte-to-character map, a vocabulary, merges, added tokens) and, out only, a character
vocabulary as HF's WordLevel model.

HF's BPE and tiktoken's are two rules: HF merges only the pairs its merge list holds, the earliest listed first;
tiktoken merges any adjacent pair whose bytes are a token, the lowest rank first (and takes a piece that is a token
whole). A tiktoken vocabulary (gptkit's own, gpt2, cl100k_base) goes out as every pair that makes a token, ordered by
the token's rank, with `ignore_merges` (the whole-piece rule): transformers' tiktoken converter does the same. A
tokenizer.json comes in with its own list and flag, and gptkit.tokenizer.byte_level runs HF's rule on it.

A post-processor (a BOS that Llama 3's template adds) is not part of encoding text: gptkit's ids are HF's with
add_special_tokens=False. Refused in one line, never approximated: another model (Unigram/SentencePiece, WordPiece,
WordLevel), byte fallback, a normalizer other than NFC (Qwen's), pre-tokenizers other than Split(regex) + ByteLevel (or
SmolLM2's Digits + ByteLevel), a prefix space, added tokens that strip whitespace. Not here: building a Tokenizer
(gptkit.tokenizer.byte_level) or choosing the class (gptkit.tokenizer.load). Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from gptkit.tokenizer.encodings import bytes_to_unicode

# HF's ByteLevel(use_regex=True) split: GPT-2's (tokenizers, pre_tokenizers/byte_level.rs)
HF_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Digits(individual_digits=True) then that split (SmolLM2's, StarCoder's) as one regex: each digit (\p{N}, Rust's
# char::is_numeric) alone, and a digit read as the end of the text by (?!\S), since Digits cuts the text there
HF_DIGITS_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
_INTERVAL_PLUS = re.compile(r"(?<!\\)\{\d+(?:,\d*)?\}\+")
BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def byte_chars(b: bytes) -> str:
    """Bytes as GPT-2's printable characters. Example: b" hi!" -> "Ġhi!"""
    return "".join(BYTE_TO_CHAR[x] for x in b)


def _atom_start(pattern: str, end: int) -> int:
    """Where the regex atom ending at pattern[end - 1] starts: a group, a class, an escape, or one character."""
    closing = pattern[end - 1]
    if closing in ")]":
        opening, depth, i = "(" if closing == ")" else "[", 0, end - 1
        while i >= 0:
            escaped = i > 0 and pattern[i - 1] == "\\"
            if not escaped and pattern[i] == closing:
                depth += 1
            elif not escaped and pattern[i] == opening:
                depth -= 1
                if depth == 0:
                    return i
            i -= 1
        raise ValueError(f"unbalanced {closing!r} in pattern {pattern!r}")
    if closing == "}" and (k := pattern.rfind("\\", 0, end)) >= 0 and pattern[k + 1] in "pP":
        return k  # \p{L}
    return end - 2 if end >= 2 and pattern[end - 2] == "\\" else end - 1


def interval_plus(pattern: str, wrap: str) -> str:
    r"""Rewrite each `X{n,m}+` as wrap.format(X{n,m}). The two regex engines read it differently: Python's regex (and
    tiktoken's) as possessive, HF's Oniguruma as (X{n,m})+. Out: wrap "(?>{})" (atomic = possessive); in: "(?:{})+".

    Example: (r"\p{N}{1,3}+", "(?>{})") -> r"(?>\p{N}{1,3})"
    """
    out, i = pattern, 0
    while (m := _INTERVAL_PLUS.search(out, i)) is not None:
        start = _atom_start(out, m.start())
        new = wrap.format(out[start : m.end() - 1])
        out, i = out[:start] + new + out[m.end():], start + len(new)
    return out


def all_pair_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every (left, right) whose bytes are a token, both parts tokens, ordered by the token's rank (then the parts'):
    HF's BPE with these merges and ignore_merges is tiktoken's rule.

    Example: ranks {a: 0, b: 1, ab: 2, ba: 3, aba: 4} -> [(a, b), (b, a), (a, ba), (ab, a)]
    """
    out = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        out += sorted(splits, key=lambda p: (ranks[p[0]], ranks[p[1]]))
    return out


def _added(specials: dict[str, int]) -> list[dict]:
    return [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True} for s, i in sorted(specials.items(), key=lambda kv: kv[1])]


def bpe_json(pattern: str | None, ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]],
             specials: dict[str, int], ignore_merges: bool, normalizer: str | None = None) -> dict:
    """tokenizer.json of a byte-level BPE: Split(pattern) then ByteLevel, as HF writes Llama 3's and Qwen's."""
    if any(bytes([b]) not in ranks for b in range(256)):
        raise ValueError("HF's byte-level BPE needs a token for each of the 256 bytes; this vocabulary lacks some")
    vocab = {byte_chars(t): i for t, i in sorted(ranks.items(), key=lambda kv: kv[1])}
    clash = sorted(specials.keys() & vocab.keys())
    if clash:
        raise ValueError(f"special token {clash[0]!r} is also a learned token's text; HF's vocabulary holds one")
    vocab.update(specials)  # HF gives an added token the id the model's vocabulary has for it, else the next free one
    pre = [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]
    if pattern is not None:
        regex = interval_plus(pattern, "(?>{})")
        pre.insert(0, {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False})
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": _added(specials),
        "normalizer": {"type": normalizer} if normalizer else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges,
                  "vocab": vocab,
                  "merges": [[byte_chars(a), byte_chars(b)] for a, b in merges]},
    }


def char_json(chars: list[str], specials: dict[str, int] | None = None) -> dict:
    """tokenizer.json of a character vocabulary: each character its own piece, looked up whole (WordLevel), decoded
    by concatenation (Fuse); an unknown character is an error in HF as in gptkit (no unk token). Special tokens (the
    chat tokens) are added tokens, matched before the split, with the ids after the characters."""
    specials = dict(specials or {})
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": _added(specials), "normalizer": None,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"[\s\S]"}, "behavior": "Isolated", "invert": False},
        "post_processor": None, "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": {**{c: i for i, c in enumerate(chars)}, **specials},
                  "unk_token": "<unk>"},
    }


def parse_char_json(doc: dict) -> tuple[str, dict[str, int]] | None:
    """(the characters in id order, the special tokens) of a tokenizer.json that char_json wrote (and only such a
    one), else None."""
    model = doc.get("model") or {}
    if model.get("type") != "WordLevel" or doc.get("normalizer"):
        return None
    if doc.get("pre_tokenizer") != char_json([])["pre_tokenizer"] or doc.get("decoder") != {"type": "Fuse"}:
        return None
    added = doc.get("added_tokens") or []
    specials = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
    if len(specials) != len(added) or _added(specials) != added:
        return None
    vocab = {c: i for c, i in model.get("vocab", {}).items() if c not in specials}
    chars = [c for c, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if not chars or any(len(c) != 1 for c in chars) or chars != sorted(chars) or \
            [vocab[c] for c in chars] != list(range(len(chars))):
        return None  # gptkit's CharTokenizer gives sorted characters ids 0, 1, ...
    if sorted(specials.values()) != list(range(len(chars), len(chars) + len(specials))):
        return None
    return "".join(chars), specials


def _fail(path, what: str):
    raise ValueError(f"{path}: {what}; gptkit reads byte-level BPE tokenizer.json files only (GPT-2, GPT-4, "
                     "Llama 3, Qwen style)")


def _pattern(pre: dict | None, path) -> str | None:
    """The one split regex of a pre-tokenizer: ByteLevel(use_regex) = GPT-2's; Split(regex, Isolated) + ByteLevel."""
    steps = (pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]) if pre else []
    if not steps or steps[-1].get("type") != "ByteLevel":
        _fail(path, f"pre_tokenizer {json.dumps(pre)[:80]} does not end in ByteLevel")
    last, pattern = steps[-1], None
    if last.get("add_prefix_space"):
        _fail(path, "ByteLevel(add_prefix_space=True) adds a space gptkit's tokenizer does not")
    if last.get("use_regex", True):
        pattern = HF_GPT2_PATTERN
        if [s.get("type") for s in steps[:-1]] == ["Digits"] and steps[0].get("individual_digits"):
            return HF_DIGITS_GPT2_PATTERN
    for step in steps[:-1]:
        kind, regex = step.get("type"), (step.get("pattern") or {}).get("Regex")
        if kind != "Split" or regex is None or step.get("behavior") != "Isolated" or step.get("invert"):
            _fail(path, f"pre-tokenizer {json.dumps(step)[:80]} is not Split(regex, behavior=Isolated)")
        if pattern is not None:
            _fail(path, "two split regexes in a row are not one gptkit pattern")
        pattern = interval_plus(regex, "(?:{})+")
    return pattern


def _check_kind(doc: dict, path) -> dict:
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        _fail(path, f"model type {model.get('type')!r} (Unigram is SentencePiece's) is not BPE")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        _fail(path, "a BPE with byte_fallback / subword prefixes (SentencePiece style) is not byte-level BPE")
    if model.get("dropout"):
        _fail(path, "BPE dropout makes encoding random")
    _normalizer(doc.get("normalizer"), path)
    if (doc.get("decoder") or {"type": "ByteLevel"}).get("type") != "ByteLevel":
        _fail(path, f"decoder {doc['decoder'].get('type')!r} is not ByteLevel")
    return model


def _normalizer(norm: dict | None, path) -> str | None:
    """None, or "NFC" (Qwen2/3's: the one normalizer gptkit applies, with Python's unicodedata); others refused."""
    steps = (norm.get("normalizers") if norm.get("type") == "Sequence" else [norm]) if norm else []
    kinds = [s.get("type") for s in steps]
    if kinds not in ([], ["NFC"]):
        _fail(path, f"normalizer {'+'.join(map(str, kinds))!r} changes the text before splitting; gptkit applies "
                    "none or NFC")
    return kinds[0] if kinds else None


def _to_bytes(token: str, path) -> bytes:
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError:
        _fail(path, f"vocabulary token {token[:40]!r} is not in GPT-2's byte-to-character map")


def parse_bpe_json(doc: dict, path: str | os.PathLike = "tokenizer.json") -> dict:
    """Tokenizer arguments of a byte-level BPE tokenizer.json: {ranks (bytes -> id), pattern, special_tokens (every
    added token), hf_merges ((bytes, bytes) in priority order), ignore_merges}, refusing other kinds in one line."""
    model = _check_kind(doc, path)
    pattern = _pattern(doc.get("pre_tokenizer"), path)
    specials = {}
    for t in doc.get("added_tokens") or []:
        if t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            _fail(path, f"added token {t['content']!r} strips whitespace or matches whole words only")
        specials[t["content"]] = t["id"]
    ids = set(specials.values())
    ranks = {_to_bytes(tok, path): i for tok, i in model.get("vocab", {}).items() if i not in ids}
    merges = []
    for m in model.get("merges", []):
        a, b = m.split(" ") if isinstance(m, str) else m  # tokenizers < 0.20 wrote "a b"
        merges.append((_to_bytes(a, path), _to_bytes(b, path)))
    return {"ranks": ranks, "pattern": pattern, "special_tokens": specials, "hf_merges": merges,
            "ignore_merges": bool(model.get("ignore_merges", False)),
            "normalizer": _normalizer(doc.get("normalizer"), path)}


def read_tokenizer_json(path: str | os.PathLike) -> dict:
    """A tokenizer.json file's JSON object, or a ValueError saying why it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a tokenizer.json (not valid JSON: {e})") from None
    if not isinstance(doc, dict) or "model" not in doc:
        raise ValueError(f"{path}: not a tokenizer.json (no 'model')")
    return doc


def tokenizer_config(specials: dict[str, int], eot: str | None, max_length: int) -> dict:
    """tokenizer_config.json for AutoTokenizer: the fast tokenizer on tokenizer.json, no clean-up of spaces (it would
    change decoded text), <|endoftext|> as EOS (and BOS, as GPT-2's) when there is one."""
    doc = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
           "clean_up_tokenization_spaces": False, "add_bos_token": False, "add_eos_token": False,
           "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in _added(specials)}}
    if eot is not None:
        doc.update(bos_token=eot, eos_token=eot)
    return doc
