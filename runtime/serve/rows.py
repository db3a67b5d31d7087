"""Rows of generation and the two graph calls the batcher makes on them.

A row is one listener's stream: its LSTM state, the notes it feeds at its next call, its place
in the portable random stream (seed, stream index, notes drawn) and its sampling. `prime`
runs one row alone (its pending input is longer than one note: a primer, or notes a session
appended); `step` advances many rows of one-note input in one call. Counter-based uniforms:
a row's n-th note takes uniform(seed, stream, 8 n + j) whatever else is in the call.

This is the serving side's stand-in for runtime/session.py (the generation session of the
refactor issue), which will own rows, their state and their random stream for every caller.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib

import numpy as np

from ..backends import Backend, zero_state
from ..contract import FEATURES, UNIFORMS
from ..rng import check_seed, draw, keys
from ..spec import Sampling

F = len(FEATURES)


def stream_key(seed: int, stream: int = 0) -> np.uint64:
    """key(seed, stream) of the portable random stream (runtime/rng.py)."""
    return keys([check_seed(seed)], [stream])[0]


def row_uniforms(row_keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """[n, 8] float32: row i's note counters[i] of the stream keyed row_keys[i]."""
    return draw(row_keys, counters, 1)[0]


@dataclasses.dataclass(eq=False)
class Row:
    """One stream of notes. `pending` is what the next call feeds (float32 [T, 4])."""

    seed: int
    sampling: Sampling
    pending: np.ndarray
    stream: int = 0
    counter: int = 0                  # notes drawn so far: the next is note `counter` of the stream
    exact: bool = False               # always called alone (B = 1), as `mpx run` calls the graph
    h: np.ndarray | None = None       # [L, 1, H]; None = zeros
    c: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.key = stream_key(self.seed, self.stream)

    @property
    def group(self) -> object:
        """Rows of one group can share a call (contract v2: one temperature and top-p per call)."""
        return id(self) if self.exact else (self.sampling.temperature, self.sampling.top_p)

    @property
    def needs_own_call(self) -> bool:
        return self.exact or len(self.pending) != 1

    def append(self, notes: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, np.asarray(notes, np.float32).reshape(-1, F)])

    def state_bytes(self) -> int:
        return sum(a.nbytes for a in (self.h, self.c, self.pending) if a is not None)


def _sampling(row: Row) -> tuple[np.ndarray, np.ndarray]:
    return np.array(row.sampling.temperature, np.float32), np.array(row.sampling.top_p, np.float32)


def prime(backend: Backend, row: Row) -> np.ndarray:
    """One call of one row over all its pending notes: its next note [4] (B = 1, as `mpx run`)."""
    h, c = (row.h, row.c) if row.h is not None else zero_state(backend.spec, 1)
    u = row_uniforms(np.array([row.key]), np.array([row.counter]))
    out = backend.call(np.ascontiguousarray(row.pending[None]), h, c, u, *_sampling(row))
    return _advance(row, out.next_note[0], out.hn, out.cn)


class PrimerStates:
    """New rows start as `mpx run --num-outputs K` starts its streams: all but the primer's last
    note run once, at B = 1, from a zero state; the row takes that state and feeds the last note
    in the batch's next step, where it draws its first note. The state after a primer's head
    depends on the head alone, so it is kept (by the head's bytes, the most recently used
    `size`): listeners who start from the same seed (the server's own, a page's preset) share
    one call, and a new request's first note waits for one step of the batch, not for a
    primer's call."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.states: collections.OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()

    @staticmethod
    def key(row: Row) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(row.pending[:-1]).tobytes(), digest_size=16).digest()

    def known(self, row: Row) -> bool:
        return self.key(row) in self.states

    def start(self, backend: Backend, row: Row) -> bool:
        """Give a fresh row (no state, a primer of 2+ notes) its head's state; True when that
        took a graph call."""
        key = self.key(row)
        called = key not in self.states
        if called:
            head = np.ascontiguousarray(row.pending[None, :-1])
            unused = np.zeros((1, UNIFORMS), np.float32)  # the note this call draws is not kept
            out = backend.call(head, *zero_state(backend.spec, 1), unused, *_sampling(row))
            self.states[key] = (out.hn, out.cn)
            while len(self.states) > self.size:
                self.states.popitem(last=False)
        self.states.move_to_end(key)
        row.h, row.c = self.states[key]
        row.pending = row.pending[-1:].copy()
        return called


def starts_with_primer(row: Row) -> bool:
    """A fresh row with a primer of 2+ notes (PrimerStates starts it)."""
    return not row.exact and row.h is None and len(row.pending) > 1


def prime_key(row: Row) -> object:
    """Rows of one key can be primed in one call: the same input length and sampling."""
    return (len(row.pending), row.group)


def step(backend: Backend, rows: list[Row]) -> np.ndarray:
    """One call over rows with the same pending length and sampling (one note each when
    stepping the batch; a session's appended notes when priming several rows at once): their
    next notes [n, 4]. The batcher passes a PaddedBackend (runtime/serve/padding.py), so that a
    row's bits do not depend on how many rows share the call."""
    batch = rows
    spec = backend.spec
    x = np.stack([r.pending for r in batch])                      # [B, T, 4]
    hs = [r.h if r.h is not None else zero_state(spec, 1)[0] for r in batch]
    cs = [r.c if r.c is not None else zero_state(spec, 1)[1] for r in batch]
    u = row_uniforms(np.array([r.key for r in batch]), np.array([r.counter for r in batch]))
    out = backend.call(x, np.concatenate(hs, axis=1), np.concatenate(cs, axis=1), u, *_sampling(rows[0]))
    notes = out.next_note
    for i, row in enumerate(rows):
        _advance(row, notes[i], out.hn[:, i:i + 1], out.cn[:, i:i + 1])
    return notes


def _advance(row: Row, note: np.ndarray, h: np.ndarray, c: np.ndarray) -> np.ndarray:
    row.h, row.c = h, c
    row.pending = note[None].copy()
    row.counter += 1
    return note
