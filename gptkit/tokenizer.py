"""The byte-level BPE tokenizer: a split pattern, a bytes -> rank vocabulary and special tokens.

`Tokenizer` trains (see `gptkit.bpe` for the algorithm), encodes and decodes with tiktoken's semantics,
and saves to a readable text format or to tiktoken's `.tiktoken` ranks. Pretrained encodings (GPT-2,
cl100k_base) come from `gptkit.pretrained`; the char- and word-level tokenizers live in
`gptkit.simple_tokenizers` and share the saved-file header and `load_tokenizer`.

Not here: anything about models or token files on disk (that is `gptkit.data`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Literal

import regex

from gptkit import bpe
from gptkit.files import atomic_write_text
from gptkit.parallel import imap_bounded

# GPT-2's pre-tokenizer (as in tiktoken's r50k_base) and GPT-4's (cl100k_base).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}
ENDOFTEXT = "<|endoftext|>"
FORMAT_LINE = "gptkit tokenizer v1"

_CACHE_MAX = 1 << 17  # chunks remembered by the encoder before the cache is cleared


def resolve_pattern(pattern: str | None) -> str | None:
    """"gpt2" / "gpt4" -> their regex; None -> None (no split); any other string must compile."""
    if pattern is None:
        return None
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regex ({e}); use 'gpt2', 'gpt4', None or a regex") from None
    return pattern


def render_token(t: bytes) -> str:
    """Printable form of a token's bytes: invalid UTF-8 as U+FFFD, control characters escaped.

    Example: b"a\\n" -> "a\\\\u000a"
    """
    s = t.decode("utf-8", errors="replace")
    return "".join(f"\\u{ord(c):04x}" if (ord(c) < 32 or 127 <= ord(c) < 160) else c for c in s)


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
        import codecs

        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in ids:
            if token == self.eot_token:
                break
            piece = utf8.decode(self.decode_bytes([token]))
            if piece:
                yield piece
        tail = utf8.decode(b"", final=True)
        if tail:
            yield tail

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
        return h.hexdigest()


class Tokenizer(TokenizerBase):
    """Byte-level BPE with tiktoken's encode/decode semantics.

    ranks: token bytes -> id for the mergeable tokens; special_tokens: string -> id, ids outside ranks.
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str | None = "gpt4",
        special_tokens: dict[str, int] | None = None,
        *,
        name: str | None = None,
        merges: list[tuple[int, int]] | None = None,
    ) -> None:
        special_tokens = dict(special_tokens or {})
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
        self._special_re_cache: dict[frozenset, regex.Pattern] = {}

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

        with tqdm(total=target - 256, desc="merges", unit="merge", disable=_no_bar(progress)) as bar:
            if algorithm == "fast":
                merges = bpe.train_fast(word_counts, target, on_merge=bar.update)
            elif algorithm == "naive":
                merges = bpe.train_naive(word_counts, target)
            else:
                raise ValueError(f"algorithm must be 'fast' or 'naive', got {algorithm!r}")
        if len(merges) < target - 256:
            warnings.warn(
                f"the corpus supports only {len(merges)} merges, fewer than the {target - 256} asked for; "
                f"the vocabulary has {256 + len(merges) + len(specials)} tokens. Give more text or a smaller vocab_size.",
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
            ids = bpe.encode_piece(raw, self._ranks)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with special-token strings treated as plain text."""
        if self._split is None:
            return self._encode_chunk(text) if text else []
        out: list[int] = []
        cache, encode_chunk = self._cache, self._encode_chunk
        for chunk in self._split.findall(text):
            ids = cache.get(chunk)
            out += ids if ids is not None else encode_chunk(chunk)
        return out

    def _special_re(self, tokens: frozenset) -> regex.Pattern:
        pat = self._special_re_cache.get(tokens)
        if pat is None:
            alts = sorted(tokens, key=len, reverse=True)  # longest first, so a prefix never wins
            pat = regex.compile("|".join(regex.escape(t) for t in alts))
            self._special_re_cache[tokens] = pat
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

    def encode_batch(self, texts: Iterable[str], *, num_workers: int = 1, **encode_kwargs) -> list[list[int]]:
        """Encode many texts; with num_workers > 1 they are spread over worker processes."""
        texts = list(texts)
        if num_workers <= 1 or len(texts) < 2:
            return [self.encode(t, **encode_kwargs) for t in texts]
        size = max(1, len(texts) // (4 * num_workers))
        tasks = [(texts[i : i + size], encode_kwargs) for i in range(0, len(texts), size)]
        out: list[list[int]] = []
        for ids in imap_bounded(_worker_encode, tasks, num_workers, initializer=_set_worker_tokenizer, initargs=(self,)):
            out += ids
        return out

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
        """Write the tokenizer to `path` (readable text with a version line) and a `.vocab` view beside it."""
        path = Path(path)
        byte_tokens = [self._decoder[i] for i in range(256)] if len(self._ranks) >= 256 else []
        identity = byte_tokens == [bytes([i]) for i in range(256)]
        lines = [
            FORMAT_LINE,
            "type bpe",
            f"pattern {json.dumps(self.pattern)}",
            "bytes identity" if identity else "bytes " + " ".join(str(t[0]) for t in byte_tokens),
            f"special {len(self._special)}",
            *(f"{json.dumps(s)} {i}" for s, i in sorted(self._special.items(), key=lambda kv: kv[1])),
            f"merges {len(self.merges)}",
            *(f"{a} {b}" for a, b in self.merges),
        ]
        atomic_write_text(path, "\n".join(lines) + "\n")
        atomic_write_text(_vocab_path(path), self.vocab_view())

    def vocab_view(self) -> str:
        """The merge tree, one token a line: `[t][he] -> [the] 1234`, then the special tokens."""
        lines = [f"[{render_token(self._decoder[i])}] {i}" for i in range(256)]
        for k, (a, b) in enumerate(self.merges):
            da, db = self._decoder[a], self._decoder[b]
            lines.append(f"[{render_token(da)}][{render_token(db)}] -> [{render_token(da + db)}] {256 + k}")
        lines += [f"special [{s}] {i}" for s, i in sorted(self._special.items(), key=lambda kv: kv[1])]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a BPE tokenizer written by `save`."""
        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {type(tok).__name__}, not a BPE tokenizer; use gptkit.load_tokenizer")
        return tok

    @classmethod
    def _from_lines(cls, lines: _Lines) -> Tokenizer:
        pattern = lines.json_value("pattern")
        byte_spec = lines.field("bytes")
        if byte_spec == "identity":
            byte_tokens = None
        else:
            vals = lines.ints(byte_spec, 256)
            if sorted(vals) != list(range(256)):
                lines.fail("'bytes' must list each byte 0..255 exactly once")
            byte_tokens = [bytes([v]) for v in vals]
        specials = {}
        for _ in range(lines.count("special")):
            s, i = lines.json_and_int()
            specials[s] = i
        merges = []
        n = lines.count("merges")
        for k in range(n):
            a, b = lines.ints(lines.next(), 2)
            if not (0 <= a < 256 + k and 0 <= b < 256 + k):
                lines.fail(f"merge ({a}, {b}) refers to a token that does not exist yet (merge {k} makes id {256 + k})")
            merges.append((a, b))
        vocab = bpe.vocab_from_merges(merges, byte_tokens)
        ranks = {t: i for i, t in enumerate(vocab)}
        if len(ranks) != len(vocab):
            lines.fail("two merges make the same bytes; the file is corrupted")
        lines.end()
        try:
            return cls(ranks, pattern, specials, merges=merges)
        except ValueError as e:
            lines.fail(str(e))

    # -- tiktoken interchange ---------------------------------------------------------------------

    def save_tiktoken(self, path: str | os.PathLike) -> None:
        """Write the mergeable ranks in tiktoken's format (`base64 rank` per line). The pattern and
        special tokens are not part of that format: pass `pattern` and `special_tokens` to tiktoken."""
        lines = (f"{base64.b64encode(t).decode()} {i}" for t, i in sorted(self._ranks.items(), key=lambda kv: kv[1]))
        atomic_write_text(path, "\n".join(lines) + "\n")

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
        return cls(read_tiktoken_ranks(path), pattern, special_tokens, name=name)

    @classmethod
    def from_pretrained(cls, name: str) -> Tokenizer:
        """"gpt2" (also "r50k_base") or "cl100k_base", exactly as tiktoken encodes them."""
        from gptkit.pretrained import load_pretrained

        return load_pretrained(name)

    def __repr__(self) -> str:
        kind = self.name or "trained"
        return f"Tokenizer({kind}, vocab_size={self.vocab_size}, specials={len(self._special)})"


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Parse tiktoken's ranks format; a bad line raises ValueError naming the file and line."""
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tok, rank = line.split()
                ranks[base64.b64decode(tok, validate=True)] = int(rank)
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: not a tiktoken ranks line (expected '<base64 token> <rank>'): {line[:60]!r}"
                ) from None
    if not ranks:
        raise ValueError(f"{path}: no ranks in file; is it a .tiktoken file?")
    return ranks


def _no_bar(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None shows the bar only on a terminal."""
    return None if progress is None else not progress


def _vocab_path(path: Path) -> Path:
    return path.with_suffix(".vocab") if path.suffix != ".vocab" else path.with_suffix(".vocab.txt")


# -- counting chunks for training --------------------------------------------------------------------


def _split_out_specials(text: str, specials: list[str]) -> list[str]:
    if not specials:
        return [text]
    pat = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))
    return pat.split(text)


def _count_block(args: tuple[list[str], str | None, list[str]]) -> Counter:
    texts, pattern, specials = args
    split = regex.compile(pattern).findall if pattern is not None else (lambda t: [t])
    counts: Counter = Counter()
    for text in texts:
        for piece in _split_out_specials(text, specials):
            if piece:
                counts.update(split(piece))
    return counts


def _batches(texts: Iterable[str], pattern, specials, target_chars: int = 1 << 20) -> Iterator[tuple]:
    batch, size = [], 0
    for t in texts:
        if not isinstance(t, str):
            raise ValueError(f"training texts must be str, got {type(t).__name__}; decode bytes to text first")
        batch.append(t)
        size += len(t)
        if size >= target_chars:
            yield batch, pattern, specials
            batch, size = [], 0
    if batch:
        yield batch, pattern, specials


def count_chunks(texts: Iterable[str], pattern: str | None, specials: list[str] = (), num_workers: int = 1) -> Counter:
    """Count each unique pre-tokenized chunk over documents, streaming; each document is split alone."""
    total: Counter = Counter()
    for counts in imap_bounded(_count_block, _batches(texts, pattern, list(specials)), num_workers):
        total.update(counts)
    return total


# -- worker-process encoding ---------------------------------------------------------------------------

_WORKER_TOKENIZER = None


def _set_worker_tokenizer(tok) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tok


def _worker_encode(task: tuple[list[str], dict]) -> list[list[int]]:
    texts, kwargs = task
    return [_WORKER_TOKENIZER.encode(t, **kwargs) for t in texts]


# -- the saved-file format, shared with gptkit.simple_tokenizers ----------------------------------------


class _Lines:
    """A cursor over a saved tokenizer's lines; every error names the file and the line."""

    def __init__(self, path, text: str) -> None:
        self.path, self.lines, self.i = path, text.split("\n"), 0
        if self.lines and self.lines[-1] == "":
            self.lines.pop()

    def fail(self, msg: str):
        raise ValueError(f"{self.path}:{self.i}: {msg}")

    def next(self) -> str:
        if self.i >= len(self.lines):
            self.i += 1
            self.fail("file ends early; it is truncated or not a gptkit tokenizer")
        self.i += 1
        return self.lines[self.i - 1]

    def field(self, key: str) -> str:
        line = self.next()
        k, _, v = line.partition(" ")
        if k != key:
            self.fail(f"expected a '{key} ...' line, got {line[:60]!r}")
        return v

    def count(self, key: str) -> int:
        return self.ints(self.field(key), 1)[0]

    def ints(self, s: str, n: int) -> list[int]:
        try:
            vals = [int(x) for x in s.split()]
        except ValueError:
            vals = []
        if len(vals) != n:
            self.fail(f"expected {n} integer(s), got {s[:60]!r}")
        return vals

    def json_value(self, key: str):
        try:
            return json.loads(self.field(key))
        except json.JSONDecodeError as e:
            self.fail(f"bad JSON ({e})")

    def json_str(self, s: str | None = None, what: str = "a JSON string") -> str:
        """Parse `s` (default: the next line) as a JSON string, or fail naming the line."""
        line = self.next() if s is None else s
        try:
            val = json.loads(line)
        except json.JSONDecodeError:
            val = None
        if not isinstance(val, str):
            self.fail(f"expected {what}, got {line[:60]!r}")
        return val

    def json_and_int(self) -> tuple[str, int]:
        s, _, i = self.next().rpartition(" ")
        return self.json_str(s, "a JSON string and an id"), self.ints(i, 1)[0]

    def end(self) -> None:
        if self.i != len(self.lines):
            self.i += 1
            self.fail("unexpected extra lines after the end of the tokenizer")


def load_tokenizer(path: str | os.PathLike):
    """Load any tokenizer written by a gptkit `save` (bpe, char or word), checking the version line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a gptkit tokenizer file (not UTF-8 text)") from None
    lines = _Lines(path, text)
    first = lines.next() if lines.lines else ""
    if first != FORMAT_LINE:
        if first.startswith("gptkit tokenizer"):
            lines.fail(f"unsupported version {first!r}; this gptkit reads {FORMAT_LINE!r}")
        lines.fail(f"not a gptkit tokenizer file (first line should be {FORMAT_LINE!r}, got {first[:40]!r})")
    kind = lines.field("type")
    if kind == "bpe":
        return Tokenizer._from_lines(lines)
    from gptkit import simple_tokenizers

    classes = {"char": simple_tokenizers.CharTokenizer, "word": simple_tokenizers.WordTokenizer}
    if kind not in classes:
        lines.fail(f"unknown tokenizer type {kind!r}; expected bpe, char or word")
    return classes[kind]._from_lines(lines)


def get_tokenizer(spec: str):
    """A tokenizer from a CLI-style spec: 'gpt2', 'cl100k_base', or the path of a saved tokenizer."""
    from gptkit.pretrained import PRETRAINED

    if spec in PRETRAINED:
        return Tokenizer.from_pretrained(spec)
    if os.path.exists(spec):
        return load_tokenizer(spec)
    raise ValueError(f"unknown tokenizer {spec!r}: use one of {', '.join(PRETRAINED)} or the path of a saved tokenizer")
