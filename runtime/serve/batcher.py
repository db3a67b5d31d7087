"""The continuous batcher: one scheduler advances every active stream with one graph call per
step, whatever each stream's sampling and controls (contract v3 takes them per row).

Each stream is a listener, a row of the generation session (runtime/serve/rows.py,
runtime/session.py). A new request starts in a session of its own (its primer's head once per
distinct head, at B = 1) and joins the batch at the next step; a finished, cancelled or
disconnected stream leaves at once. Bookkeeping happens on the event loop only; the graph calls
run in one worker thread (onnxruntime releases the GIL), so the server keeps answering while
the batch computes. Between two steps, new requests are primed for at most `prime_budget`
seconds, so a burst of arrivals cannot stall the streams already playing.

Every stream has a bounded buffer: when `buffer_notes` notes wait unread, its row sits out the
following steps (its state kept) until the reader takes them, so a slow reader never holds the
batch back and never makes the server hold more than that many notes for it.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time

import numpy as np

from ..backends import Backend
from ..errors import MpxError
from . import rows as rowops
from .metrics import Metrics
from .options import ServeOptions
from .padding import PaddedBackend
from .rows import Batch, Listener

log = logging.getLogger(__name__)


class Busy(MpxError):
    """Every row and queue place is taken: try again later (HTTP 429)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Draining(MpxError):
    """The server is shutting down and takes no new streams (HTTP 503)."""


@dataclasses.dataclass(eq=False)
class Stream:
    """A row's notes on their way to one reader."""

    listener: Listener
    total: int
    made: int = 0
    error: str | None = None
    cancelled: bool = False
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    first_note: float | None = None
    last_read: float = dataclasses.field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.buffer: collections.deque[np.ndarray] = collections.deque()
        self.ready = asyncio.Event()
        self.batcher: Batcher | None = None

    @property
    def done(self) -> bool:
        return self.made >= self.total or self.error is not None or self.cancelled

    @property
    def finished(self) -> bool:
        """Done and read to the end."""
        return self.done and not self.buffer

    async def read(self) -> np.ndarray | None:
        """Every note made and not yet read ([k, 4], k >= 1), waiting for one; None at the end.
        Raises MpxError if the stream failed."""
        while not self.buffer:
            if self.error is not None:
                raise MpxError(self.error)
            if self.done:
                return None
            self.ready.clear()
            await self.ready.wait()
        notes = np.stack(list(self.buffer))
        self.buffer.clear()
        self.listener.remember(notes)
        self.last_read = time.monotonic()
        if self.batcher is not None:
            self.batcher.wake()   # the row may have been waiting for room in its buffer
        return notes

    async def collect(self) -> np.ndarray:
        """All the notes, [total, 4]."""
        parts = []
        while (notes := await self.read()) is not None:
            parts.append(notes)
        return np.concatenate(parts) if parts else np.empty((0, 4), np.float32)

    def cancel(self) -> None:
        """The reader is gone: the row leaves the batch at the next step and is freed."""
        if not self.done:
            self.cancelled = True
        if self.batcher is not None:
            self.batcher.wake()

    def _push(self, note: np.ndarray, now: float) -> None:
        if self.cancelled:
            return
        self.buffer.append(note)
        self.made += 1
        if self.first_note is None:
            self.first_note = now
        self.ready.set()

    def _fail(self, message: str) -> None:
        self.error = message
        self.ready.set()


class Batcher:
    def __init__(self, backend: Backend, options: ServeOptions, metrics: Metrics) -> None:
        self.backend, self.options, self.metrics = backend, options, metrics
        self.padded = PaddedBackend(backend, options.row_quantum)  # every batched call
        self.queue: collections.deque[Stream] = collections.deque()
        self.active: list[Stream] = []
        self.draining = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mpx-graph")
        self._primers = rowops.PrimerStates()  # used in the graph thread only
        self.batch = Batch(self.padded)          # sessions: changed in the graph thread or between ticks
        self._by_id: dict[int, Stream] = {}
        metrics.gauge("mpx_active_streams", "streams with a row in the batch", lambda: len(self.active))
        metrics.gauge("mpx_queued_streams", "streams waiting for a row", lambda: len(self.queue))
        metrics.gauge("mpx_buffered_notes", "notes made and not yet read", self.buffered)
        metrics.gauge("mpx_notes_per_second", "notes generated per second, last 10 s", metrics.notes_per_second)

    # -- the outside --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mpx-batcher")

    async def stop(self) -> None:
        """Let every stream in flight finish, then stop (SIGTERM's drain)."""
        self.draining = True
        self.wake()
        if self._task is not None:
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    def submit(self, row: Listener, notes: int) -> Stream:
        global _trimmed
        _trimmed = False
        if self.draining:
            raise Draining("the server is shutting down; it takes no new streams")
        o = self.options
        if len(self.active) + len(self.queue) >= o.max_streams + o.max_queue:
            self.metrics.inc("mpx_streams_total", outcome="rejected")
            raise Busy(f"all {o.max_streams} streams and {o.max_queue} queue places are taken; "
                       "try again shortly", retry_after=1)
        stream = Stream(row, notes)
        stream.batcher = self
        if o.max_batch == 1 and not row.started:
            row.exact = True
        self.queue.append(stream)
        self.wake()
        return stream

    def wake(self) -> None:
        self._wake.set()

    def flush_interval(self) -> float:
        """Seconds between two writes of one stream: flush_interval, longer when so many streams
        run that their writes would pass max_writes a second."""
        return max(self.options.flush_interval, len(self.active) / self.options.max_writes)

    def buffered(self) -> int:
        return sum(len(s.buffer) for s in self.active)

    def streams(self) -> int:
        return len(self.active) + len(self.queue)

    # -- the scheduler ------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._retire()
            room = self.options.max_streams - len(self.active)
            admit = [s for s in list(self.queue)[:max(room, 0)]]
            ready = [s for s in self.active if self._wants_step(s)]
            if not admit and not ready:
                if self.draining and not self.active and not self.queue:
                    return
                if not self.active and not self.queue:
                    _release_memory()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)  # wakes for stall checks too
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                primed, stepped, seconds, calls = await loop.run_in_executor(self._executor, self._tick, admit, ready)
            except Exception as exc:  # a backend failure: the affected streams end, the server stays up
                message = _failure(exc)
                log.error("%s", message)
                for stream in admit + ready:
                    stream._fail(message)
                    self._discard(stream)
                continue
            self._deliver(primed, stepped, seconds, calls)

    def _wants_step(self, s: Stream) -> bool:
        return not s.done and len(s.buffer) < self.options.buffer_notes

    def _tick(self, admit: list[Stream], ready: list[Stream]) -> tuple[list, dict, float, int]:
        """In the graph's thread: start new listeners (within the budget), bring the batch's
        members up to date (the ready rows in, the paused ones out), then one step."""
        started: list[tuple[Stream, str | None, float]] = []
        begun, calls = time.monotonic(), 0
        for stream in admit:
            listener = stream.listener
            if not stream.cancelled and not listener.started:
                head = listener.primer[:-1]
                costly = not listener.exact and len(head) and not self._primers.known(self.backend, head,
                                                                                        listener.controls)
                if calls and costly and time.monotonic() - begun > self.options.prime_budget:
                    continue
                try:
                    calls += listener.start(self.padded, self.backend, self._primers)
                except Exception as exc:  # this primer broke the call: this stream alone fails
                    started.append((stream, _failure(exc), time.monotonic()))
                    continue
            started.append((stream, None, time.monotonic()))
        playing = [s.listener for s in ready if not s.listener.exact]
        wanted = {listener.id for listener in playing}
        self.batch.leave([m for i, m in self.batch.members.items() if i not in wanted])
        self.batch.join([listener for listener in playing if listener not in self.batch])
        step_started = time.monotonic()
        before = self.padded.calls
        notes = self.batch.step()
        calls += self.padded.calls - before
        for stream in ready:
            if stream.listener.exact:
                notes[stream.listener.id] = stream.listener.session.step()[0]
                calls += 1
        return started, notes, time.monotonic() - step_started, calls

    def _deliver(self, primed: list, stepped: dict, seconds: float, calls: int) -> None:
        now = time.monotonic()
        m = self.metrics
        m.inc("mpx_graph_calls_total", calls)
        made = 0
        for stream, note, wait in primed:
            self.queue.remove(stream)
            if stream.cancelled:
                self._discard(stream)
                continue
            m.observe("mpx_queue_wait_seconds", wait - stream.submitted)
            if isinstance(note, str):
                log.error("%s", note)
                stream._fail(note)
                self._discard(stream)
                continue
            self.active.append(stream)
            self._by_id[stream.listener.id] = stream
        if stepped:
            m.observe("mpx_step_seconds", seconds)
            m.observe("mpx_batch_rows", len(self.batch.members))
        finished = []
        for row, note in stepped.items():
            stream = self._by_id.get(row)
            if stream is None or stream.done:
                continue
            stream._push(note, now)
            made += 1
            self._observe_first(stream)
            if stream.made >= stream.total:
                finished.append(stream.listener)
        self.batch.leave(finished)  # home before its reader sees the end (a session goes on from there)
        if made:
            m.notes(made)

    def _observe_first(self, stream: Stream) -> None:
        if stream.made == 1:
            self.metrics.observe("mpx_time_to_first_note_seconds", stream.first_note - stream.submitted)

    def _retire(self) -> None:
        """Remove finished and cancelled streams from the batch; end stalled ones."""
        now = time.monotonic()
        for s in [s for s in self.queue if s.cancelled]:
            self._discard(s)
        keep = []
        for s in self.active:
            if not s.done and s.buffer and len(s.buffer) >= self.options.buffer_notes \
                    and now - s.last_read > self.options.stall_timeout:
                s._fail(f"the reader took no notes for {self.options.stall_timeout:g} s; stream ended")
            if s.done:
                self._discard(s)
            else:
                keep.append(s)
        self.active = keep

    def _discard(self, s: Stream) -> None:
        outcome = "cancelled" if s.cancelled else "failed" if s.error else "completed"
        self.batch.leave([s.listener])
        if s.listener.id is not None and self._by_id.get(s.listener.id) is s:
            del self._by_id[s.listener.id]
        self.metrics.inc("mpx_streams_total", outcome=outcome)
        if outcome == "completed":
            self.metrics.observe("mpx_request_seconds", time.monotonic() - s.submitted)
        if s in self.queue:
            self.queue.remove(s)


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"generation failed ({type(exc).__name__}{': ' + text if text else ''})"


_trimmed = False


def _release_memory() -> None:
    """When the batch empties, hand the heap's free pages back to the system (glibc), so that
    the process's RSS goes back down after a burst of streams instead of staying at its peak."""
    global _trimmed
    if _trimmed:
        return
    _trimmed = True
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
