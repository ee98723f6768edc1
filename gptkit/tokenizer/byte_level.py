"""The byte-level BPE tokenizer: a split pattern, a bytes -> rank vocabulary and special tokens.

`Tokenizer` trains (the algorithm: gptkit.tokenizer.bpe; chunk counting in processes: gptkit.tokenizer.parallel),
encodes and decodes with tiktoken's semantics, and saves to gptkit's text format or tiktoken's `.tiktoken` ranks (the
formats: gptkit.tokenizer.formats). `TokenizerBase` is what every gptkit tokenizer shares; the char and word tokenizers
are in gptkit.tokenizer.simple, the published encodings' data in gptkit.tokenizer.encodings, and
`load_tokenizer`/`get_tokenizer` (any kind, by file or name) in gptkit.tokenizer.load, above all of them.

Not here: anything about models or token files on disk (that is `gptkit.data.prepare`).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
import warnings
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Literal

import regex

from gptkit.files import atomic_write_text, progress_disabled
from gptkit.tokenizer import bpe, formats, hf_json
from gptkit.tokenizer.encodings import ENDOFTEXT, PATTERNS, pretrained_encoding
from gptkit.tokenizer.parallel import count_chunks, encode_in_workers
from gptkit.tokenizer.stream import Utf8StreamDecoder

_CACHE_MAX = 1 << 17  # chunks remembered by the encoder before the cache is cleared


def resolve_pattern(pattern: str | None) -> str | None:
    """"gpt2" / "gpt4" -> their regex; None -> None (no split); any other string must compile."""
    if pattern is None:
        return None
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regex ({e}); use 'gpt2', 'gpt4', None or a "
                         "regex") from None
    return pattern


def _merge_table(ranks: dict[bytes, int], merges: list[tuple[bytes, bytes]]) -> dict:
    """(left id, right id) -> (priority, merged id) for HF's rule; every part a token, all 256 bytes tokens."""
    if any(bytes([b]) not in ranks for b in range(256)):
        raise ValueError("a byte-level BPE needs a token for each of the 256 bytes; this vocabulary lacks some")
    table = {}
    for k, (a, b) in enumerate(merges):
        ids = ranks.get(a), ranks.get(b), ranks.get(a + b)
        if None in ids:
            raise ValueError(f"merge {k} ({a!r}, {b!r}) names a token that is not in the vocabulary")
        table.setdefault(ids[:2], (k, ids[2]))  # a repeated pair keeps its first (highest) priority
    return table


class TokenizerBase:
    """What every gptkit tokenizer shares: the vocabulary size and the special tokens.

    Subclasses set `_vocab_size` (one past the largest id, tiktoken's n_vocab; ids in gaps are not
    tokens) and `_special` (string -> id).
    """

    _vocab_size: int
    _special: dict[str, int]

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def n_vocab(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def special_tokens_set(self) -> set[str]:
        return set(self._special)

    @property
    def eot_token(self) -> int | None:
        return self._special.get(ENDOFTEXT)

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Text of token ids as they arrive (a sampler's stream): whole UTF-8 characters only (a character split
        across tokens comes out when complete), stopping at <|endoftext|> if the tokenizer has one."""
        decoder = self.stream_decoder()
        for token in ids:
            if token == self.eot_token:
                break
            piece = decoder.feed(token)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def stream_decoder(self) -> Utf8StreamDecoder:  # feed(id) -> the text completed by it, flush() -> the rest
        return Utf8StreamDecoder(self.decode_bytes)

    def fingerprint(self) -> str:
        """sha256 of every id's bytes, the special tokens and the split pattern: equal exactly when two
        tokenizers turn text into the same ids, so a data dir can check it was made by this tokenizer."""
        h = hashlib.sha256(f"{type(self).__name__} {json.dumps(getattr(self, 'pattern', None))}".encode())
        for i in range(self.vocab_size):
            try:
                b = self.token_bytes(i)
            except ValueError:  # a gap in the ids (cl100k_base has some)
                continue
            h.update(i.to_bytes(4, "little") + len(b).to_bytes(4, "little") + b)
        h.update(json.dumps(sorted(self._special.items())).encode())
        h.update(self._rule())
        return h.hexdigest()

    def _rule(self) -> bytes:
        """What else decides the ids (a tokenizer.json's merge list); empty for gptkit's own tokenizers."""
        return b""

    def with_special_tokens(self, tokens: Collection[str]):
        """This tokenizer with `tokens` added as special tokens at the next free ids, in order; itself when it has
        them all already. Every other id and the way text splits stay as they were (the tokenizer lecture's
        exercise). Example: GPT-2's (50,257 ids) + ["<|im_start|>", "<|im_end|>"] -> ids 50,257 and 50,258"""
        new = [t for t in dict.fromkeys(tokens) if t not in self._special]
        if not new:
            return self
        if not all(isinstance(t, str) and t for t in new):
            raise ValueError(f"special tokens must be non-empty strings, got {new!r}")
        return self._with_specials({**self._special, **{t: self.vocab_size + k for k, t in enumerate(new)}})

    def _with_specials(self, specials: dict[str, int]):
        raise NotImplementedError

    def _special_re(self, tokens: frozenset) -> regex.Pattern:
        cache = self.__dict__.setdefault("_special_re_cache", {})
        pat = cache.get(tokens)
        if pat is None:
            alts = sorted(tokens, key=len, reverse=True)  # longest first, so a prefix never wins
            pat = regex.compile("|".join(regex.escape(t) for t in alts))
            cache[tokens] = pat
        return pat

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode with tiktoken's rules for special tokens.

        By default any registered special token in `text` raises ValueError. Tokens in `allowed_special`
        ("all" or a set) become their ids; `disallowed_special=()` turns the check off so they encode
        as ordinary text.
        """
        allowed = frozenset(self._special) if allowed_special == "all" else frozenset(allowed_special)
        unknown = allowed - self._special.keys()
        if unknown:
            raise ValueError(f"allowed_special names {sorted(unknown)}, which are not special tokens of this tokenizer")
        disallowed = self._special.keys() - allowed if disallowed_special == "all" else frozenset(disallowed_special)
        if disallowed:
            m = self._special_re(frozenset(disallowed)).search(text)
            if m:
                tok = m.group()
                raise ValueError(
                    f"Encountered text corresponding to disallowed special token {tok!r}.\n"
                    f"If you want this text to be encoded as a special token, pass it to `allowed_special`, "
                    f"e.g. `allowed_special={{{tok!r}, ...}}`.\n"
                    f"If you want this text to be encoded as normal text, disable the check for this token "
                    f"by passing `disallowed_special=(enc.special_tokens_set - {{{tok!r}}})`.\n"
                    f"To disable this check for all special tokens, pass `disallowed_special=()`.\n"
                )
        if not allowed:
            return self.encode_ordinary(text)
        out: list[int] = []
        start = 0
        for m in self._special_re(allowed).finditer(text):
            out += self.encode_ordinary(text[start : m.start()])
            out.append(self._special[m.group()])
            start = m.end()
        out += self.encode_ordinary(text[start:])
        return out



class Tokenizer(TokenizerBase):
    """Byte-level BPE with tiktoken's encode/decode semantics.

    ranks: token bytes -> id for the mergeable tokens; special_tokens: string -> id, ids outside ranks.
    hf_merges: a tokenizer.json's merges ((left, right) bytes, earliest first), for HF's rule (only these pairs merge,
    in this order; ignore_merges: a piece that is a token is taken whole); None: tiktoken's rule (see
    gptkit.tokenizer.hf_json). normalizer: "NFC" (Qwen's) turns the text between special tokens to NFC first.
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str | None = "gpt4",
        special_tokens: dict[str, int] | None = None,
        *,
        name: str | None = None,
        merges: list[tuple[int, int]] | None = None,
        hf_merges: list[tuple[bytes, bytes]] | None = None,
        ignore_merges: bool = False,
        normalizer: Literal["NFC"] | None = None,
    ) -> None:
        special_tokens = dict(special_tokens or {})
        self._hf_merges, self._ignore_merges, self.normalizer = hf_merges, ignore_merges, normalizer
        if normalizer not in (None, "NFC"):
            raise ValueError(f"normalizer must be None or 'NFC', got {normalizer!r}")
        self._hf = None if hf_merges is None else _merge_table(ranks, hf_merges)
        self._byte_ids = [ranks.get(bytes([b])) for b in range(256)]
        self.name = name
        self.pattern = resolve_pattern(pattern)
        self._split = regex.compile(self.pattern) if self.pattern is not None else None
        self._ranks = ranks
        self._special = special_tokens
        self._merges = merges  # recovered from the ranks on demand when None
        self._decoder: dict[int, bytes] = {i: t for t, i in ranks.items()}
        if len(self._decoder) != len(ranks):
            raise ValueError("two mergeable tokens share an id; every token needs its own rank")
        for s, i in special_tokens.items():
            if not s:
                raise ValueError("a special token cannot be the empty string")
            if i in self._decoder:
                raise ValueError(
                    f"special token {s!r} has id {i}, which the learned token {self._decoder[i]!r} already has; "
                    "give special tokens ids above the learned vocabulary"
                )
            self._decoder[i] = s.encode("utf-8")
        if len(set(special_tokens.values())) != len(special_tokens):
            raise ValueError("two special tokens share an id")
        if not self._decoder:
            raise ValueError("a tokenizer needs at least one token")
        self._vocab_size = max(self._decoder) + 1
        self._cache: dict[str, list[int]] = {}

    # -- the vocabulary ---------------------------------------------------------------------------

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        return dict(self._ranks)

    @property
    def merges(self) -> list[tuple[int, int]]:
        """The merge that made each multi-byte token, in id order."""
        if self._merges is None:
            self._merges = bpe.recover_merges(self._ranks)
        return self._merges

    def token_bytes(self, token: int) -> bytes:
        try:
            return self._decoder[token]
        except (KeyError, TypeError):
            raise ValueError(f"token id {token!r} is not in this vocabulary (size {self.vocab_size})") from None

    # -- training ---------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: str | Iterable[str],
        vocab_size: int,
        pattern: str | None = "gpt4",
        special_tokens: Collection[str] = (),
        *,
        num_workers: int = 1,
        progress: bool | None = None,
        algorithm: Literal["fast", "naive"] = "fast",
    ) -> Tokenizer:
        """Train byte-level BPE on a text, or an iterable of documents (streamed, never held at once).

        vocab_size counts everything: 256 bytes + merges + special tokens, which take the last ids.
        Text equal to a special token is cut out of the training text, so no learned token contains it.
        When the corpus runs out of pairs first, a warning says how many merges were possible.
        """
        specials = list(dict.fromkeys(special_tokens))
        if len(specials) != len(list(special_tokens)):
            raise ValueError(f"special tokens must be distinct, got {list(special_tokens)}")
        if not isinstance(vocab_size, int) or vocab_size <= 256 + len(specials):
            raise ValueError(
                f"vocab_size must be an integer above 256 + {len(specials)} special tokens "
                f"(the byte tokens and the specials), got {vocab_size!r}"
            )
        pattern = resolve_pattern(pattern)
        counts = count_chunks([texts] if isinstance(texts, str) else texts, pattern, specials, num_workers)
        if not counts:
            raise ValueError("the training text is empty; give at least some text to learn merges from")
        word_counts = [(w.encode("utf-8"), f) for w, f in counts.items()]
        target = vocab_size - len(specials)
        from tqdm.auto import tqdm

        with tqdm(total=target - 256, desc="merges", unit="merge", disable=progress_disabled(progress)) as bar:
            if algorithm == "fast":
                merges = bpe.train_fast(word_counts, target, on_merge=bar.update)
            elif algorithm == "naive":
                merges = bpe.train_naive(word_counts, target)
            else:
                raise ValueError(f"algorithm must be 'fast' or 'naive', got {algorithm!r}")
        if len(merges) < target - 256:
            warnings.warn(
                f"the corpus supports only {len(merges)} merges, fewer than the {target - 256} asked for; "
                f"the vocabulary has {256 + len(merges) + len(specials)} tokens. Give more text or a smaller "
                "vocab_size.",
                stacklevel=2,
            )
        vocab = bpe.vocab_from_merges(merges)
        ranks = {t: i for i, t in enumerate(vocab)}
        special_ids = {s: len(vocab) + k for k, s in enumerate(specials)}
        return cls(ranks, pattern, special_ids, merges=merges)

    # -- encoding ---------------------------------------------------------------------------------

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            try:
                raw = chunk.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: replaced, as tiktoken does
                raw = chunk.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
            if self._hf is None:
                ids = bpe.encode_piece(raw, self._ranks)
            elif self._ignore_merges and raw in self._ranks:
                ids = [self._ranks[raw]]
            else:
                ids = bpe.encode_by_merges([self._byte_ids[b] for b in raw], self._hf)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with special-token strings treated as plain text."""
        text = unicodedata.normalize(self.normalizer, text) if self.normalizer else text
        if self._split is None:
            return self._encode_chunk(text) if text else []
        out: list[int] = []
        cache, encode_chunk = self._cache, self._encode_chunk
        for chunk in self._split.findall(text):
            ids = cache.get(chunk)
            out += ids if ids is not None else encode_chunk(chunk)
        return out

    def encode_batch(self, texts: Iterable[str], *, num_workers: int = 1, **encode_kwargs) -> list[list[int]]:
        """Encode many texts; with num_workers > 1 they are spread over worker processes."""
        texts = list(texts)
        if num_workers <= 1 or len(texts) < 2:
            return [self.encode(t, **encode_kwargs) for t in texts]
        return encode_in_workers(self, texts, num_workers, **encode_kwargs)

    def _with_specials(self, specials: dict[str, int]) -> Tokenizer:
        return Tokenizer(self._ranks, self.pattern, specials, merges=self._merges, hf_merges=self._hf_merges,
                         ignore_merges=self._ignore_merges, normalizer=self.normalizer)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"], state["_special_re_cache"] = {}, {}
        return state

    # -- decoding ---------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = list(ids)
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except (KeyError, TypeError):
            for i in ids:
                self.token_bytes(i)  # raises, naming the first bad id
            raise

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode to text; bytes that are not valid UTF-8 become U+FFFD (tiktoken's default)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- saving -----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to `path` (readable text with a version line) and a `.vocab` view beside it; one that
        came from a tokenizer.json is written as tokenizer.json (gptkit's format has no place for its merge rule)."""
        if self._hf is not None:
            atomic_write_text(path, json.dumps(self.to_tokenizer_json(), ensure_ascii=False) + "\n")
            return
        byte_tokens = [self._decoder[i] for i in range(256)] if len(self._ranks) >= 256 else []
        identity = byte_tokens == [bytes([i]) for i in range(256)]
        formats.write_bpe(path, self.pattern, None if identity else byte_tokens, self._special, self.merges)
        atomic_write_text(formats.vocab_path(path), self.vocab_view())

    def vocab_view(self) -> str:
        """The merge tree, one token a line: `[t][he] -> [the] 1234`, then the special tokens."""
        return formats.vocab_view(self._decoder, self.merges, self._special)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a BPE tokenizer written by `save` (gptkit.load_tokenizer loads any kind)."""
        kind, lines = formats.read_header(path)
        if kind != "bpe":
            raise ValueError(f"{path} holds a {kind} tokenizer, not a BPE tokenizer; use gptkit.load_tokenizer")
        return cls.from_lines(lines)

    @classmethod
    def from_lines(cls, lines: formats.Lines) -> Tokenizer:
        """The tokenizer whose saved body `lines` points at (after the type line)."""
        pattern, byte_tokens, specials, merges = formats.parse_bpe(lines)
        vocab = bpe.vocab_from_merges(merges, byte_tokens)
        ranks = {t: i for i, t in enumerate(vocab)}
        if len(ranks) != len(vocab):
            lines.fail("two merges make the same bytes; the file is corrupted")
        lines.end()
        try:
            return cls(ranks, pattern, specials, merges=merges)
        except ValueError as e:
            lines.fail(str(e))

    # -- Hugging Face and tiktoken interchange -----------------------------------------------------

    def to_tokenizer_json(self) -> dict:
        """HF's tokenizer.json giving this tokenizer's ids (encode with allowed_special="all": HF always matches
        added tokens): its own merges for one read from a tokenizer.json, every token-making pair by rank for
        tiktoken's rule."""
        if self._hf_merges is not None:
            merges, ignore = self._hf_merges, self._ignore_merges
        else:
            merges, ignore = hf_json.all_pair_merges(self._ranks), True
        return hf_json.bpe_json(self.pattern, self._ranks, merges, self._special, ignore, self.normalizer)

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike) -> Tokenizer:
        """A byte-level BPE tokenizer.json (GPT-2, GPT-4, Llama 3, Qwen style) with HF's ids; other kinds refused."""
        args = hf_json.parse_bpe_json(hf_json.read_tokenizer_json(path), path)
        try:
            return cls(**args, name=Path(path).name)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def _rule(self) -> bytes:
        return (b"" if self._hf_merges is None else json.dumps(
            [self._ignore_merges] + [[a.hex(), b.hex()] for a, b in self._hf_merges]).encode()) + \
            (self.normalizer or "").encode()

    def save_tiktoken(self, path: str | os.PathLike) -> None:
        """Write the mergeable ranks in tiktoken's format (`base64 rank` per line). The pattern and
        special tokens are not part of that format: pass `pattern` and `special_tokens` to tiktoken."""
        formats.write_tiktoken_ranks(path, self._ranks)

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        pattern: str | None = "gpt4",
        special_tokens: dict[str, int] | None = None,
        *,
        name: str | None = None,
    ) -> Tokenizer:
        """Load a tiktoken `.tiktoken` ranks file, with its split pattern and special tokens."""
        return cls(formats.read_tiktoken_ranks(path), pattern, special_tokens, name=name)

    @classmethod
    def from_pretrained(cls, name: str) -> Tokenizer:
        """"gpt2" (also "r50k_base") or "cl100k_base", exactly as tiktoken encodes them."""
        return cls(**pretrained_encoding(name))

    def __repr__(self) -> str:
        kind = self.name or "trained"
        return f"Tokenizer({kind}, vocab_size={self.vocab_size}, specials={len(self._special)})"
