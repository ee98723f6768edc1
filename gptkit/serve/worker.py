"""One thread per served model: it owns the model's generation engine and runs every client's requests on it, as
one batch (a request joins the running batch as soon as a row is free: gptkit.generate.engine's continuous batching).

Clients hand in a `Job` (its choices as Requests (gptkit.generate.engine), their stop strings, an asyncio queue to hear
back on); the thread puts (choice index, text, tokens, finish) on that queue as text is produced. A cancelled job (its
client went away) leaves the batch at the next step. The waiting room is bounded: a job that would overfill it is
refused with Overloaded (the API's 503), so memory never grows with the number of clients. Waiting jobs are
admitted fairly: one choice of each job in turn, so a 3-token request does not wait behind all 16 choices of the
one before it. A closed worker (its model reloaded or evicted) finishes what it has, then its thread ends.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from gptkit.generate.text import TextStream, advance


class Overloaded(RuntimeError):
    """The waiting room is full (503)."""


@dataclass
class Job:
    requests: list  # gptkit.generate.engine.Request, one per choice
    stops: tuple[str, ...]
    emit: object  # called from the worker thread with (choice, text, n_tokens, finish) or an Exception
    cancelled: bool = False
    left: int = 0  # choices not finished yet
    next: int = 0  # the next choice the worker admits
    streams: dict = field(default_factory=dict)


class Worker:
    """The engine's thread. submit(job) from any thread; cancel(job) too."""

    def __init__(self, engine, tok, model_config, queue_limit: int, chat_format=None) -> None:
        self.engine, self.tok, self.config, self.queue_limit = engine, tok, model_config, queue_limit
        self.chat_format = chat_format  # the model's (gptkit.tokenizer.chat.ChatFormat), None for a base model
        self.waiting: deque = deque()  # jobs with choices not yet in the engine, in turn
        self.running: dict = {}  # engine key -> job
        self.closed = False
        self.lock, self.wake = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="gptkit-engine")
        self.thread.start()

    @property
    def queued(self) -> int:
        """Choices waiting, all jobs together."""
        with self.lock:
            return self._queued()

    def _queued(self) -> int:
        return sum(len(job.requests) - job.next for job in self.waiting)  # a cancelled job until its turn comes

    def submit(self, job: Job) -> None:
        with self.lock:
            queued = self._queued()
            if queued + len(job.requests) > self.queue_limit:
                raise Overloaded(f"the server is busy ({queued} choices waiting); try again shortly")
            job.left = len(job.requests)
            job.next = 0  # the next of its choices to admit
            self.waiting.append(job)
        self.wake.set()

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self.wake.set()

    def close(self) -> None:
        """Take no new work's place in the registry: finish what is running and waiting, then end the thread."""
        self.closed = True
        self.wake.set()

    def _loop(self) -> None:
        while True:
            try:
                self._admit()
                if not self.engine.busy:
                    if self.closed and not self.waiting:
                        self.engine = None  # the model goes with the engine
                        return
                    self.wake.wait(timeout=1.0)
                    self.wake.clear()
                    continue
                for update in self.engine.step():
                    self._deliver(update)
            except Exception as e:  # noqa: BLE001 -- a failed step must reach its clients, and the server go on
                for job in {id(j): j for j in self.running.values()}.values():
                    job.emit(e)
                for key in list(self.running):
                    self.engine.cancel(key)
                self.running.clear()

    def _admit(self) -> None:
        for key, job in list(self.running.items()):
            if job.cancelled:
                self.engine.cancel(key)
                del self.running[key]
        joining = []  # prefilled together (gptkit.generate.engine.EngineBase.join)
        with self.lock:
            while self.waiting and self.engine.free > len(joining):
                job = self.waiting.popleft()  # one choice of the job whose turn it is, then the next job's
                i, job.next = job.next, job.next + 1
                if job.cancelled:
                    continue
                if job.next < len(job.requests):
                    self.waiting.append(job)
                key = (id(job), i)
                job.streams[i] = TextStream(self.tok, job.stops)
                self.running[key] = job
                joining.append((key, job.requests[i]))
        self.engine.join(joining)

    def _deliver(self, update) -> None:
        job = self.running.get(update.key)
        if job is None:
            return
        i = update.key[1]
        text, finish = advance(job.streams[i], update, self.engine.cancel)
        if finish:
            del self.running[update.key]
        job.emit((i, text, len(update.tokens), finish))
