"""Bytes to text as they come: a UTF-8 decoder that holds back a character cut between two tokens.
"""

from __future__ import annotations


class Utf8StreamDecoder:
    """Token ids -> text as they arrive: each token's bytes through an incremental UTF-8 decoder, so a character
    split across tokens comes out whole, with the next one (invalid bytes: U+FFFD, as decode())."""

    def __init__(self, decode_bytes) -> None:
        import codecs

        self.decode_bytes = decode_bytes
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self.utf8.decode(self.decode_bytes([token]))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)
