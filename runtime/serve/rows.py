"""Listeners and the batch, on the generation session (runtime/session.py).

A listener is one stream of notes: a row of a Session. While it waits, pauses or is done it sits
in a session of its own; while it plays, its row is in the batch, one Session whose step is one
graph call over every row (contract v3 takes sampling and controls per row; rows whose pending
notes differ in number, an interactive session's appended notes, are called apart for that one
step: runtime/session.py). Rows keep their id, state, pending notes and random stream (seed, stream 0,
note counter) as they move between the two (Session.take / Session.join), so a listener's n-th
note takes uniform(seed, 0, 8 n + j) whatever else is in the batch.

Every batched call goes through a PaddedBackend (runtime/serve/padding.py), so a row's bits do
not depend on how many rows share its call. An exact listener never joins: its own session runs
on the plain backend, one call per note at B = 1, its whole primer in its first call, as
`mpx run` does.
"""
from __future__ import annotations

import collections
import hashlib

import numpy as np

from .. import controls as control_rules
from ..backends import Backend
from ..contract import FEATURES
from ..session import Session
from ..spec import Sampling

F = len(FEATURES)


class Listener:
    """One stream of notes. Before `start` (in the graph's thread) it holds its primer; after,
    its row, in its own session (`session`) or in the batch (`session` None).

    `requested` are the controls asked for ({name: value}, a key spelled out as pc0..pc11,
    checked: requests.requested_of); `controls` [C] what the graph gets: the requested ones, the
    others held at the summaries of the stream's last notes (`recent`: before the start, the
    primer's; controls.resolve, as `mpx run` feeds them)."""

    def __init__(self, seed: int, sampling: Sampling, primer: np.ndarray, exact: bool = False,
                 requested: dict[str, float | None] | None = None) -> None:
        self.seed, self.sampling, self.exact = seed, sampling, exact
        self.primer = np.asarray(primer, np.float32).reshape(-1, F)
        self.session: Session | None = None
        self.id: int | None = None
        self.started = False
        self._drawn = 0
        # the last controls.WINDOW notes of the stream (primer, made, appended)
        self.recent = self.primer[-control_rules.WINDOW:].copy()
        self.requested = dict(requested or {})
        self.controls = control_rules.resolve(self.recent, self.requested)

    @property
    def pending(self) -> int:
        """Notes fed at the next call."""
        if not self.started:
            return len(self.primer)
        return len(self.session.pending(0)) if self.session is not None else 1

    @property
    def drawn(self) -> int:
        """Notes drawn from its random stream so far."""
        return int(self.session.drawn[0]) if self.session is not None else self._drawn

    def append(self, notes: np.ndarray) -> None:
        """Notes someone played, fed after the note just made at the next call (not while in the batch)."""
        notes = np.asarray(notes, np.float32).reshape(-1, F)
        if not self.started:
            self.primer = np.concatenate([self.primer, notes])
        elif len(notes):
            self.session.append(notes)
        self.remember(notes)
        if not self.started:  # still the primer: its summaries, as `mpx run` with this primer
            self.controls = control_rules.resolve(self.recent, self.requested)

    def remember(self, notes: np.ndarray) -> None:
        """Notes of the stream (made or appended), kept as `recent`."""
        if len(notes):
            self.recent = np.concatenate([self.recent, np.asarray(notes, np.float32).reshape(-1, F)])[-control_rules.WINDOW:]

    def set_sampling(self, sampling: Sampling) -> None:
        """From the next note on (not while in the batch)."""
        self.sampling = sampling
        if self.session is not None:
            self.session.set_sampling(sampling)

    def set_controls(self, requested: dict[str, float | None]) -> None:
        """The controls asked for from the next note on (not while in the batch); the others
        held at the summaries of the stream's last notes (`recent`)."""
        self.requested = dict(requested)
        self.controls = control_rules.resolve(self.recent, self.requested)
        if self.session is not None:
            self.session.set_controls(self.controls)

    def start(self, padded: Backend, plain: Backend, primers: "PrimerStates") -> bool:
        """Make its row (graph thread). A primer of 2+ notes starts as `mpx run --num-outputs K`
        starts its streams: the head once at B = 1 (kept by PrimerStates), the last note
        pending; an exact listener feeds its whole primer at its first call. True when this
        took a graph call."""
        called = False
        if self.exact:
            session = Session(plain, 1, seed=self.seed, sampling=self.sampling)
            session.prime(self.primer)
            session.set_controls(self.controls)
        else:
            session = Session(padded, 1, seed=self.seed, sampling=self.sampling)
            session.set_controls(self.controls)
            if len(self.primer) > 1:
                state, called = primers.state(plain, self.primer[:-1], self.sampling, self.controls)
                session.state = state
                session.append(self.primer[-1:])
            elif len(self.primer):
                session.append(self.primer)
        self.session, self.id, self.started = session, int(session.ids[0]), True
        return called


class PrimerStates:
    """The state after a primer's head, kept by the head's bytes (the `size` most recently
    used): listeners who start from the same seed share one call, and a new listener's first
    note waits for one step of the batch, not for a primer's call. The head runs with the
    listener's controls, as `mpx run` runs it; a model whose LSTM reads the controls
    (config.controls_into "lstm" or "both") keeps one state per head and controls, one that
    reads them in its heads only (the default) one per head."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.states: collections.OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()

    def state(self, plain: Backend, head: np.ndarray, sampling: Sampling,
              controls: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], bool]:
        key = self.key(plain, head, controls)
        called = key not in self.states
        if called:
            session = Session(plain, 1, seed=0, sampling=sampling)
            session.set_controls(controls)
            session.append(head)
            session.step(feed_back=False)   # the note it draws is not kept
            self.states[key] = session.state
            while len(self.states) > self.size:
                self.states.popitem(last=False)
        self.states.move_to_end(key)
        return self.states[key], called

    def known(self, plain: Backend, head: np.ndarray, controls: np.ndarray) -> bool:
        return self.key(plain, head, controls) in self.states

    @staticmethod
    def key(plain: Backend, head: np.ndarray, controls: np.ndarray) -> bytes:
        data = np.ascontiguousarray(head, np.float32).tobytes()
        if getattr(plain.spec.config, "controls_into", "both") != "heads":  # the state depends on them
            data += b"|" + np.ascontiguousarray(controls, np.float32).tobytes()
        return hashlib.blake2b(data, digest_size=16).digest()


class Batch:
    """The rows that play: one Session on the padded backend."""

    def __init__(self, padded: Backend) -> None:
        self.session = Session(padded, 0, seed=0)
        self.members: dict[int, Listener] = {}

    def __contains__(self, listener: Listener) -> bool:
        return listener.id in self.members

    def join(self, listeners: list[Listener]) -> None:
        for listener in listeners:
            self.session.join(listener.session)
            listener.session = None
            self.members[listener.id] = listener

    def leave(self, listeners: list[Listener]) -> None:
        """Their rows back into sessions of their own."""
        leaving = [l for l in listeners if l.id in self.members]
        if not leaving:
            return
        taken = self.session.take([l.id for l in leaving])
        for listener in leaving[:-1]:
            listener.session = taken.take([listener.id])
            del self.members[listener.id]
        leaving[-1].session = taken
        del self.members[leaving[-1].id]

    def step(self) -> dict[int, np.ndarray]:
        """One step of every row: {row id: note}."""
        if not self.members:
            return {}
        notes = self.session.step()
        drawn = self.session.drawn
        for i, row in enumerate(self.session.ids.tolist()):
            self.members[row]._drawn = int(drawn[i])
        return dict(zip(self.session.ids.tolist(), notes))
