"""Text out of the generation engine: each request's ids decoded as they arrive, cut exactly before a stop string.

`TextStream` turns one request's ids into text pieces (whole UTF-8 characters, WordTokenizer's spaces) and holds
back text that could still become the start of a stop string until it cannot; `generate_text` drives any engine
(gptkit.generate.engine.EngineBase, either backend) and cancels a request whose text reached a stop string.

Not here: tensors (no torch, no mlx), the engine's scheduling.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class TextStream:
    """One request's text. `feed(ids)` -> the text now safe to show; `finish()` -> the rest (nothing once a stop
    string was found: `stopped`). The text never includes the stop string or anything after it.

    Example (stop "\\n\\n"): feed "ab\\n" -> "ab" (the "\\n" may start the stop), feed "\\nc" -> "", stopped
    """

    def __init__(self, tok, stop: Sequence[str] = ()) -> None:
        if any(not s for s in stop):
            raise ValueError("a stop string must not be empty")
        self.decoder, self.stop = tok.stream_decoder(), tuple(stop)
        self.pending, self.stopped = "", False

    def feed(self, ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        self.pending += "".join(self.decoder.feed(t) for t in ids)
        return self._release(final=False)

    def finish(self) -> str:
        if self.stopped:
            return ""
        self.pending += self.decoder.flush()
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[: min(hits)], "", True
            return out
        hold = 0 if final else max((_overlap(self.pending, s) for s in self.stop), default=0)
        out, self.pending = self.pending[: len(self.pending) - hold], self.pending[len(self.pending) - hold :]
        return out


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that is a beginning of `stop` (shorter than stop).

    Example: _overlap("abc\\n", "\\n\\n") -> 1
    """
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def advance(stream: TextStream, update, cancel) -> tuple[str, str | None]:
    """The new text and finish of one engine Update (gptkit.generate.engine) through its request's TextStream. A stop
    string
    in the text finishes the request ("stop"), and cancel(update.key) tells an engine that did not know yet."""
    text, finish = stream.feed(update.tokens), update.finish
    if stream.stopped:
        if finish is None:
            cancel(update.key)
        finish = "stop"
    if finish:
        text += stream.finish()
    return text, finish


def generate_text(engine, tok, requests: Sequence, stop: Sequence[Sequence[str]] | None = None
                  ) -> Iterator[tuple[int, str, str | None]]:
    """(request index, new text, finish) as the engine produces them: finish is None while a request runs, then
    "stop" (a stop token or one of its stop strings) or "length". stop[i]: request i's stop strings."""
    streams = {}
    for update in engine.run(requests):
        i = update.key
        if i not in streams:
            streams[i] = TextStream(tok, stop[i] if stop else ())
        text, finish = advance(streams[i], update, engine.cancel)
        if text or finish:
            yield i, text, finish
