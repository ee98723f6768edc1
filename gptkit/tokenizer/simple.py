"""Character-level and word-level tokenizers with the same interface as the BPE `Tokenizer`.

- `CharTokenizer`: nanoGPT's shakespeare_char: the vocabulary is the sorted set of characters of the
  training text; a character outside it cannot be encoded (ValueError naming it). Special tokens (the chat
  tokens, added by `with_special_tokens`) take the ids after the characters, with tiktoken's rules in encode.
- `WordTokenizer`: Raschka's SimpleTokenizerV2: words and punctuation, unknown words -> `<|unk|>`,
  plus `<|endoftext|>` and any special tokens added after them. Decoding joins words with spaces, so it does not
  round-trip whitespace.

Neither handles bytes that are not text; both save to the same file format as `Tokenizer` (gptkit.tokenizer.formats).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable

from gptkit.files import atomic_write_text
from gptkit.tokenizer.byte_level import TokenizerBase
from gptkit.tokenizer.encodings import ENDOFTEXT
from gptkit.tokenizer.formats import FORMAT_LINE, Lines

UNK = "<|unk|>"
_WORD_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')
_SPACE_BEFORE_PUNCT = re.compile(r'\s+([,.:;?!"()\'])')


class _SpacedStreamDecoder:
    """stream_decoder() of the char and word tokenizers: the text token t adds after the token before it."""

    def __init__(self, decode) -> None:
        self.decode, self.prev = decode, None

    def feed(self, token: int) -> str:
        prev, self.prev = self.prev, token
        return self.decode([token]) if prev is None else self.decode([prev, token])[len(self.decode([prev])):]

    def flush(self) -> str:
        return ""


class _SimpleBase(TokenizerBase):
    """Shared plumbing: decode via a list of strings, bytes views, specials, errors naming the id."""

    _itos: list[str]

    @property
    def _vocab_size(self) -> int:
        return len(self._itos)

    def _piece(self, i) -> str:
        if isinstance(i, bool) or not (0 <= i < len(self._itos)):  # a negative index must not wrap around
            raise ValueError(f"token id {i!r} is not in this vocabulary (size {self.vocab_size})")
        return self._itos[i]

    def token_bytes(self, token: int) -> bytes:
        return self._piece(token).encode("utf-8")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def stream_decoder(self) -> _SpacedStreamDecoder:
        """Each token's text as decode() places it after the one before (WordTokenizer joins words with spaces, so
        token-by-token decoding would glue them together). Example (words "Hello", ",", "world"): "Hello", ",", " world"
        """
        return _SpacedStreamDecoder(self.decode)

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list[list[int]]:
        kwargs.pop("num_workers", None)  # encoding is a dict lookup; processes would only add overhead
        return [self.encode(t, **kwargs) for t in texts]

def _special_lines(specials: dict[str, int], first: int) -> str:
    """The saved form of special tokens past the built-in ones: a `specials` line, or nothing."""
    extra = {t: i for t, i in specials.items() if i >= first}
    return f"specials {json.dumps(extra, ensure_ascii=False)}\n" if extra else ""


def _read_specials(lines: Lines, first: int) -> dict[str, int]:
    """The optional `specials` line: tokens with the ids from `first` on, in order."""
    if not lines.more():
        return {}
    specials = lines.json_value("specials")
    if not isinstance(specials, dict) or sorted(specials.values()) != list(range(first, first + len(specials))) or \
            not all(isinstance(t, str) and t for t in specials):
        lines.fail(f"'specials' must map non-empty strings to the ids {first}, {first + 1}, ...")
    return specials


class CharTokenizer(_SimpleBase):
    """One token per character. Example: chars "\\n !ab" -> encode("ab!") == [3, 4, 2]"""

    def __init__(self, chars: Iterable[str], specials: dict[str, int] | None = None) -> None:
        itos = sorted(set(chars))
        if not itos:
            raise ValueError("a char tokenizer needs at least one character; is the text empty?")
        if any(len(c) != 1 for c in itos):
            raise ValueError("CharTokenizer takes single characters")
        self._stoi = {c: i for i, c in enumerate(itos)}
        self._special = dict(specials or {})
        if sorted(self._special.values()) != list(range(len(itos), len(itos) + len(self._special))):
            raise ValueError(f"a char tokenizer's special tokens take the ids after its {len(itos)} characters")
        self._itos = itos + sorted(self._special, key=self._special.get)

    def _with_specials(self, specials: dict[str, int]) -> CharTokenizer:
        return CharTokenizer(self._stoi, specials)

    @classmethod
    def train(cls, texts: str | Iterable[str]) -> CharTokenizer:
        """The sorted set of characters over `texts` (a string or an iterable of strings)."""
        chars: set[str] = set()
        for t in [texts] if isinstance(texts, str) else texts:
            chars.update(t)
        return cls(chars)

    @property
    def chars(self) -> str:
        return "".join(self._itos[: len(self._stoi)])

    def encode_ordinary(self, text: str) -> list[int]:
        try:
            return [self._stoi[c] for c in text]
        except KeyError as e:
            pos = text.index(e.args[0])
            raise ValueError(
                f"character {e.args[0]!r} at position {pos} is not in this char tokenizer's vocabulary; "
                "build the tokenizer from text that contains it"
            ) from None

    def decode(self, ids: Iterable[int], errors: str = "strict") -> str:
        return "".join(self._piece(i) for i in ids)

    def save(self, path: str | os.PathLike) -> None:
        specials = _special_lines(self._special, len(self._stoi))
        atomic_write_text(path, f"{FORMAT_LINE}\ntype char\nchars {json.dumps(self.chars)}\n{specials}")

    @classmethod
    def from_lines(cls, lines: Lines) -> CharTokenizer:
        chars = lines.json_value("chars")
        if not isinstance(chars, str) or not chars:
            lines.fail("'chars' must be a non-empty JSON string")
        specials = _read_specials(lines, len(set(chars)))
        lines.end()
        return cls(chars, specials)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class WordTokenizer(_SimpleBase):
    """Words and punctuation; unknown words -> <|unk|>. Example (vocab from "Hello, world."):
    encode("Hello, moon.") -> ids of ["Hello", ",", "<|unk|>", "."]"""

    def __init__(self, words: Iterable[str], extra: Iterable[str] = ()) -> None:
        itos = sorted(set(words) - {ENDOFTEXT, UNK})
        if not itos:
            raise ValueError("a word tokenizer needs at least one word; is the text empty?")
        self._itos = itos + [ENDOFTEXT, UNK] + [t for t in dict.fromkeys(extra) if t not in (ENDOFTEXT, UNK)]
        self._stoi = {w: i for i, w in enumerate(self._itos)}
        self._special = {t: i for i, t in enumerate(self._itos) if i >= len(itos)}

    def _with_specials(self, specials: dict[str, int]) -> WordTokenizer:
        words = self._itos[: self._special[ENDOFTEXT]]
        return WordTokenizer(words, sorted(specials, key=specials.get))

    @staticmethod
    def split(text: str) -> list[str]:
        """Example: 'Hello, world. Is this-- a test?' -> ['Hello', ',', 'world', '.', 'Is', 'this', '--',
        'a', 'test', '?']"""
        return [w for w in (p.strip() for p in _WORD_SPLIT.split(text)) if w]

    @classmethod
    def train(cls, texts: str | Iterable[str]) -> WordTokenizer:
        words: set[str] = set()
        for t in [texts] if isinstance(texts, str) else texts:
            words.update(cls.split(t))
        return cls(words)

    def encode_ordinary(self, text: str) -> list[int]:
        unk = self._special[UNK]
        return [self._stoi.get(w, unk) for w in self.split(text)]

    def encode(
        self,
        text: str,
        *,
        allowed_special: str | Collection[str] = "all",
        disallowed_special: str | Collection[str] = (),
    ) -> list[int]:
        """As in SimpleTokenizerV2, `<|endoftext|>` between documents (and any other special token) is always its
        own token."""
        out, start = [], 0
        for m in self._special_re(frozenset(self._special)).finditer(text):
            out += self.encode_ordinary(text[start: m.start()]) + [self._special[m.group()]]
            start = m.end()
        return out + self.encode_ordinary(text[start:])

    def decode(self, ids: Iterable[int], errors: str = "strict") -> str:
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(self._piece(i) for i in ids))

    def save(self, path: str | os.PathLike) -> None:
        words = self._itos[: self._special[ENDOFTEXT]]
        body = "\n".join(json.dumps(w) for w in words)
        specials = _special_lines(self._special, len(words) + 2)
        atomic_write_text(path, f"{FORMAT_LINE}\ntype word\nwords {len(words)}\n{body}\n{specials}")

    @classmethod
    def from_lines(cls, lines: Lines) -> WordTokenizer:
        words = []
        for _ in range(lines.count("words")):
            words.append(lines.json_str())
        specials = _read_specials(lines, len(set(words) - {ENDOFTEXT, UNK}) + 2)
        lines.end()
        return cls(words, sorted(specials, key=specials.get))

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"
