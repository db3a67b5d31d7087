"""The generation session: rows (streams) that advance together through one backend, one graph
call per step. Everything that rolls a model out drives it: the Generator (`mpx run`, the Python
API), parity's lock-step rollout, the stateful evaluation, and a server's batch.

    session = Session(backend, rows=3, seed=7)   # streams 0..2 of seed 7 (None: a fresh seed, once)
    session.prime(primer)                        # reset, then the primer as every row's pending input
    notes = session.generate(256)                # [3, 256, 4]; generate(n, progress=...) reports
    session.append(played)                       # notes someone else played: fed at the next step
    nxt = session.step()                         # [3, 4]: one graph call, each row draws its note
    session.set_controls(k, rows=[0])            # a row's controls [C] from the next step on
    session.give([[-1, 0.5, -1, -1]] * 3)        # the next step's notes get step 0.5 s, the rest drawn

Per row the session holds the LSTM state, the pending input (the notes fed at the next call:
the primer, the note just drawn, notes appended), the portable random stream's seed, stream and
note counter (runtime/rng.py: row r's n-th drawn note takes uniform(seed_r, stream_r, 8 n + j),
whatever else is in the batch), the sampling parameters, the controls (runtime/controls.py; set
at each prime from the requested ones and the primer's summaries, `controls.resolve`) and the
attributes given for the next note (none after each step). Rows leave a session with `take`
and enter one with `join` (a server's continuous batcher: a new request is primed in a session
of its own, so its long first call runs alone, then joins the batch, whose steps are one call
over every row).

One call per step needs every row to feed the same number of notes (contract v3 takes the
sampling parameters, controls and given attributes per row). Rows that differ are split into
groups of equal length, one call per group: the first step after a join. A row's notes do not
depend on the grouping (its uniforms are its own), up to float rounding at other batch sizes.

Window mode (`window=seq_len`) is the tutorial's generation: every step runs the row's last
`window` notes from a zero state; nothing is carried, the window slides instead.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from . import controls as control_rules, notes as note_rules
from .backends import Backend, zero_state
from .checks import integer
from .contract import ATTRIBUTES, FEATURES, UNIFORMS, Outputs
from .errors import OptionsError
from .rng import UniformStream, check_seed, fresh_seed
from .spec import ModelSpec, Sampling

Progress = Callable[[int, int], None]  # (notes done, notes asked for), after every step
F = len(FEATURES)
A = len(ATTRIBUTES)
_ids = itertools.count()  # row ids, unique in the process: rows keep theirs across take and join


class Session:
    """Rows that advance together. Not thread-safe: one step at a time."""

    def __init__(self, backend: Backend, rows: int = 1, *, seed: int | None = None,
                 streams: Sequence[int] | None = None, sampling: Sampling | None = None,
                 window: int | None = None, controls: dict[str, float | None] | None = None) -> None:
        self.backend = backend
        self.spec: ModelSpec = backend.spec
        self.window = integer("window", window, 1) if window is not None else None
        # the seed of the rows made here, chosen once (rows joined later keep their own: seeds)
        self.seed = check_seed(seed) if seed is not None else fresh_seed()
        streams = np.arange(rows) if streams is None else np.asarray(streams, np.int64)
        if len(streams) != rows:
            raise OptionsError(f"streams must give one stream per row ({rows}), got {len(streams)}", "streams")
        sampling = sampling or self.spec.sampling
        # the controls asked for (name -> value, None: not given); the rest follow each primer
        self.requested = dict(controls or {})
        control_rules.resolve(np.zeros((0, F), np.float32), self.requested)  # names and ranges, checked now
        h, c = zero_state(self.spec, integer("rows", rows, 0))
        self._rows(ids=np.array([next(_ids) for _ in range(rows)], np.int64),
                   seeds=np.full(rows, self.seed, np.uint64), streams=streams, h=h, c=c,
                   pending=np.zeros((rows, 0, F), np.float32), lengths=np.zeros(rows, np.int64),
                   temperature=np.tile(np.float32(sampling.temperature), (rows, 1)),
                   top_p=np.tile(np.float32(sampling.top_p), (rows, 1)),
                   controls=control_rules.unset(rows), given=np.full((rows, F), -1.0, np.float32),
                   uniforms=UniformStream(self.seed, streams))
        # the inputs and outputs of the last graph call (None after a step of several calls)
        self.last: tuple[tuple[np.ndarray, ...], Outputs] | None = None

    def _rows(self, *, ids: np.ndarray, seeds: np.ndarray, streams: np.ndarray, h: np.ndarray,
              c: np.ndarray, pending: np.ndarray, lengths: np.ndarray, temperature: np.ndarray,
              top_p: np.ndarray, controls: np.ndarray, given: np.ndarray, uniforms: UniformStream) -> None:
        """Set every per-row array at once (rows are made, taken and joined through here)."""
        self.ids, self.seeds, self.streams = ids, seeds, streams
        self._h, self._c = h, c
        self._pending, self._lengths = pending, lengths
        self._temperature, self._top_p = temperature, top_p
        self._controls, self._given = controls, given
        self._no_given = np.full_like(given, -1.0)
        self._uniforms = uniforms
        self._ones = np.ones(len(ids), np.int64)
        self._changed()

    def _changed(self) -> None:
        """After anything but a plain step: whether one call serves every row (the pending
        lengths agree; the per-row arrays go into the call whole), and whether that call is the
        hot path (stateful, every row feeding notes, nothing given)."""
        self._one_call = bool(len(self.ids)) and bool((self._lengths == self._lengths[0]).all())
        self._fast = (self._one_call and self.window is None and bool(self._lengths[0])
                      and not (self._given >= 0).any())

    # -- what the rows hold -------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.ids)

    @property
    def drawn(self) -> np.ndarray:
        """Notes each row has drawn from its random stream: int64 [R]."""
        return self._uniforms.notes

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """The LSTM state (h, c) of every row, [L, R, H] each (copies)."""
        return self._h.copy(), self._c.copy()

    @state.setter
    def state(self, value: tuple[np.ndarray, np.ndarray]) -> None:
        shape = self._h.shape
        h, c = (np.array(v, np.float32) for v in value)
        if h.shape != shape or c.shape != shape:
            raise OptionsError(f"state must be two arrays of shape {list(shape)}, got {list(h.shape)}, "
                               f"{list(c.shape)}", "state")
        self._h, self._c = h, c

    def pending(self, row: int) -> np.ndarray:
        """The notes row `row` (an index) feeds at its next call (its window, in window mode)."""
        return self._pending[row, self._pending.shape[1] - self._lengths[row]:].copy()

    def sampling(self, row: int) -> Sampling:
        """Row `row`'s sampling parameters (as the graph gets them: float32, shortest form)."""
        return Sampling(*(tuple(float(str(v)) for v in values[row]) for values in (self._temperature, self._top_p)))

    def set_sampling(self, sampling: Sampling, rows: Sequence[int] | None = None) -> None:
        """Sampling parameters of some rows (indices; all rows for None) from the next step on."""
        index = slice(None) if rows is None else np.asarray(rows, np.int64)
        self._temperature, self._top_p = self._temperature.copy(), self._top_p.copy()  # `last` keeps its own
        self._temperature[index] = np.float32(sampling.temperature)
        self._top_p[index] = np.float32(sampling.top_p)
        self._changed()

    def controls(self, row: int) -> np.ndarray:
        """Row `row`'s controls [C] (runtime/controls.py; negative: not given)."""
        return self._controls[row].copy()

    def set_controls(self, values: np.ndarray, rows: Sequence[int] | None = None) -> None:
        """The controls of some rows (indices; all for None) from the next step on: [C] for all
        of them or [rows, C], negative = not given (checked: runtime/controls.py check). A prime
        sets them again from the requested ones and its primer."""
        index = slice(None) if rows is None else np.asarray(rows, np.int64)
        checked = self._per_row(control_rules.check(values), index, "controls")
        self._controls = self._controls.copy()
        self._controls[index] = checked

    def give(self, values: np.ndarray, rows: Sequence[int] | None = None) -> None:
        """Attributes of the next note of some rows (indices; all for None) fixed rather than
        drawn, for the next step only: [4] or [rows, 4] (pitch, step, duration, velocity),
        negative = drawn. (Given the real next note, the step's logits are teacher-forced on
        every row: scoring.)"""
        index = slice(None) if rows is None else np.asarray(rows, np.int64)
        checked = self._per_row(note_rules.check_given(values), index, "given")
        self._given = self._given.copy()
        self._given[index] = checked
        self._changed()

    def _per_row(self, values: np.ndarray, index: slice | np.ndarray, name: str) -> np.ndarray:
        """`values` ([n] or [rows, n], checked) for the rows `index` names; OptionsError naming
        `name` when they name rows the session lacks or give another number of rows."""
        count = self.rows if isinstance(index, slice) else len(index)
        if not isinstance(index, slice) and len(index) and (index.min() < -self.rows or index.max() >= self.rows):
            raise OptionsError(f"{name}: rows {index.tolist()} are not all among the session's {self.rows}", name)
        if values.ndim == 2 and len(values) not in (1, count):
            raise OptionsError(f"{name}: {len(values)} rows of values for {count} rows", name)
        return values

    # -- input ----------------------------------------------------------------------------------
    def reset(self, rows: Sequence[int] | None = None) -> None:
        """Rows (indices; all for None) back to their start: zero state, nothing pending, the
        random stream at note 0 (so the same primer gives the same notes again)."""
        if rows is None:
            self._h, self._c = zero_state(self.spec, self.rows)
            self._pending, self._lengths = np.zeros((self.rows, 0, F), np.float32), np.zeros(self.rows, np.int64)
            self._uniforms = UniformStream(list(map(int, self.seeds)), self.streams)
            self._changed()
            return
        index = np.asarray(rows, np.int64)
        if not len(index):
            return
        self._h, self._c = self._h.copy(), self._c.copy()  # the last call's outputs stay as they were
        self._h[:, index] = 0.0
        self._c[:, index] = 0.0
        keep = self._lengths.copy()
        keep[index] = 0
        self._set_pending(self._pending, keep)
        notes = self._uniforms.notes
        notes[index] = 0
        self._uniforms = UniformStream(list(map(int, self.seeds)), self.streams, notes)

    def prime(self, primer: np.ndarray, source: str = "primer") -> None:
        """reset, then `primer` [P, 4] as every row's pending input. Several rows share the
        primer's state: all but its last note run once, at B = 1, and the state is repeated;
        the last note runs with every row, so each draws its own first note (one row: the whole
        primer in its first call)."""
        primer = note_rules.check(primer, source)
        if not len(primer):
            raise OptionsError(f"{source}: holds no notes to prime the model with")
        self.reset()
        self._controls = np.tile(control_rules.resolve(primer, self.requested), (self.rows, 1))
        if self.window is None and self.rows > 1 and len(primer) > 1:
            head = np.ascontiguousarray(primer[None, :-1])
            unused = np.zeros((1, UNIFORMS), np.float32)  # the note this call draws is not kept
            out = self.backend.call(head, *zero_state(self.spec, 1), unused, self._temperature[:1], self._top_p[:1],
                                    self._controls[:1], self._no_given[:1])
            self._h, self._c = np.repeat(out.hn, self.rows, axis=1), np.repeat(out.cn, self.rows, axis=1)
            primer = primer[-1:]
        self.append(primer, source=source)

    def append(self, notes: np.ndarray, rows: Sequence[int] | None = None, source: str = "notes") -> None:
        """Notes fed to some rows (indices; all for None) at their next call, after what they
        already have pending: [N, 4] for every one of them, or [rows, N, 4] one run per row
        (notes someone else played, the real notes of a piece being scored)."""
        given = np.asarray(notes, np.float32)
        per_row = given.ndim == 3
        checked = note_rules.check(given.reshape(-1, F) if per_row else given, source)
        index = np.arange(self.rows) if rows is None else np.asarray(rows, np.int64)
        if per_row and len(given) != len(index):
            raise OptionsError(f"{source}: {len(given)} runs of notes for {len(index)} rows")
        runs = checked.reshape(given.shape) if per_row else np.broadcast_to(checked, (len(index), *checked.shape))
        added = runs.shape[1]
        if rows is None and (self._lengths == self._lengths[:1]).all():  # one concatenation
            self._set_pending(np.concatenate([self._pending, runs], axis=1), self._lengths + added)
            return
        lengths = self._lengths.copy()
        lengths[index] += added
        width = int(lengths.max()) if self.rows else 0
        pending = np.zeros((self.rows, width, F), np.float32)
        extra = dict(zip(index.tolist(), runs))
        for row in range(self.rows):  # right-aligned: a row's pending notes end at the last column
            own = self.pending(row)
            if row in extra:
                own = np.concatenate([own, extra[row]])
            pending[row, width - len(own):] = own
        self._set_pending(pending, lengths)

    def _set_pending(self, pending: np.ndarray, lengths: np.ndarray) -> None:
        if self.window is not None and pending.shape[1] > self.window:
            pending, lengths = pending[:, -self.window:], np.minimum(lengths, self.window)
        width = int(lengths.max()) if len(lengths) else 0
        if pending.shape[1] > width:  # a row's pending notes always end at the last column
            pending = pending[:, pending.shape[1] - width:]
        self._pending, self._lengths = np.ascontiguousarray(pending, np.float32), lengths
        self._changed()

    # -- stepping -------------------------------------------------------------------------------
    def step(self, feed_back: bool = True) -> np.ndarray:
        """One graph call (or one per group of rows, see the module's notes): every row feeds
        its pending notes and draws its next note -> [R, 4]. With feed_back (the default) each
        row's note is its next input; without, nothing is pending (stateful) or the window stays
        (window mode) until the caller appends."""
        if self._fast:  # the hot path: a few attribute moves around the graph call
            inputs = (self._pending, self._h, self._c, self._uniforms.next(), self._temperature, self._top_p,
                      self._controls, self._given)
            out = self.backend.call(*inputs)
            self.last = inputs, out
            self._h, self._c = out.hn, out.cn
            if feed_back:
                self._pending, self._lengths = out.next_note[:, None, :], self._ones
            else:
                self._pending, self._lengths = self._pending[:, :0], self._ones * 0
                self._fast = False
            return out.next_note
        return self._step(feed_back)

    def _step(self, feed_back: bool) -> np.ndarray:
        if not self.rows:
            raise OptionsError("the session has no rows to step")
        if not self._lengths.all():
            raise OptionsError("a row has no notes to feed: prime or append first")
        u = self._uniforms.next()
        if self._one_call:
            h, c = (self._h, self._c) if self.window is None else zero_state(self.spec, self.rows)
            inputs = (self._pending, h, c, u, self._temperature, self._top_p, self._controls, self._given)
            out = self.backend.call(*inputs)
            self.last = inputs, out
            notes, hn, cn = out.next_note, out.hn, out.cn
        else:
            notes, hn, cn = self._grouped(u)
        if (self._given >= 0).any():
            self._given = self._no_given.copy()
        if self.window is None:
            self._h, self._c = hn, cn
            if feed_back:
                self._pending, self._lengths = notes[:, None, :], self._ones
            else:
                self._pending, self._lengths = self._pending[:, :0], self._ones * 0
            self._changed()
        elif feed_back:
            self._set_pending(np.concatenate([self._pending, notes[:, None, :]], axis=1), self._lengths + 1)
        return notes

    def _grouped(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One call per group of rows with the same pending length."""
        _, group_of = np.unique(self._lengths, return_inverse=True)
        notes = np.empty((self.rows, F), np.float32)
        hn, cn = np.empty_like(self._h), np.empty_like(self._c)
        self.last = None
        for group in range(int(group_of.max()) + 1):
            index = np.flatnonzero(group_of.reshape(-1) == group)
            first, width = index[0], int(self._lengths[index[0]])
            x = np.ascontiguousarray(self._pending[index, self._pending.shape[1] - width:])
            if self.window is None:
                h, c = np.ascontiguousarray(self._h[:, index]), np.ascontiguousarray(self._c[:, index])
            else:
                h, c = zero_state(self.spec, len(index))
            out = self.backend.call(x, h, c, *(np.ascontiguousarray(a[index]) for a in (
                u, self._temperature, self._top_p, self._controls, self._given)))
            notes[index], hn[:, index], cn[:, index] = out.next_note, out.hn, out.cn
        return notes, hn, cn

    def notes(self, n: int) -> Iterator[np.ndarray]:
        """Step n times, yielding each step's notes [R, 4]."""
        for _ in range(n):
            yield self.step()

    def generate(self, n: int, progress: Progress | None = None) -> np.ndarray:
        """Step n times -> notes [R, n, 4]; progress(done, n) after every step."""
        out = np.empty((self.rows, n, F), np.float32)
        for i in range(n):
            out[:, i] = self.step()
            if progress is not None:
                progress(i + 1, n)
        return out

    # -- rows leaving and joining -----------------------------------------------------------
    def take(self, ids: Sequence[int]) -> "Session":
        """The rows with these ids, moved out into a session of their own (same backend, mode)."""
        wanted = np.asarray(ids, np.int64)
        if not np.isin(wanted, self.ids).all() or len(set(wanted.tolist())) != len(wanted):
            raise OptionsError(f"ids must be distinct ids of this session's rows, got {list(wanted)}", "ids")
        index = np.array([int(np.flatnonzero(self.ids == i)[0]) for i in wanted], np.int64)
        keep = np.setdiff1d(np.arange(self.rows), index)
        out = Session.__new__(Session)
        out.backend, out.spec, out.window, out.last = self.backend, self.spec, self.window, None
        out.requested = dict(self.requested)
        out.seed = int(self.seeds[index[0]]) if len(index) else self.seed
        for target, rows in ((out, index), (self, keep)):
            width = int(self._lengths[rows].max()) if len(rows) else 0
            target._rows(ids=self.ids[rows], seeds=self.seeds[rows], streams=self.streams[rows],
                         h=np.ascontiguousarray(self._h[:, rows]), c=np.ascontiguousarray(self._c[:, rows]),
                         pending=np.ascontiguousarray(self._pending[rows, self._pending.shape[1] - width:]),
                         lengths=self._lengths[rows].copy(), temperature=self._temperature[rows].copy(),
                         top_p=self._top_p[rows].copy(), controls=self._controls[rows].copy(),
                         given=self._given[rows].copy(), uniforms=self._uniforms.select(rows))
        return out

    def join(self, other: "Session") -> None:
        """Move every row of `other` (same backend and mode) into this session, after its own."""
        if other.backend is not self.backend or other.window != self.window:
            raise OptionsError("only sessions of one backend and one mode can join")
        width = max(self._pending.shape[1], other._pending.shape[1])

        def padded(p: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros((len(p), width - p.shape[1], F), np.float32), p], axis=1)

        self._rows(ids=np.concatenate([self.ids, other.ids]), seeds=np.concatenate([self.seeds, other.seeds]),
                   streams=np.concatenate([self.streams, other.streams]),
                   h=np.concatenate([self._h, other._h], axis=1), c=np.concatenate([self._c, other._c], axis=1),
                   pending=np.concatenate([padded(self._pending), padded(other._pending)]),
                   lengths=np.concatenate([self._lengths, other._lengths]),
                   temperature=np.concatenate([self._temperature, other._temperature]),
                   top_p=np.concatenate([self._top_p, other._top_p]),
                   controls=np.concatenate([self._controls, other._controls]),
                   given=np.concatenate([self._given, other._given]),
                   uniforms=UniformStream.joined([self._uniforms, other._uniforms]))
        other._rows(ids=other.ids[:0], seeds=other.seeds[:0], streams=other.streams[:0], h=other._h[:, :0],
                    c=other._c[:, :0], pending=other._pending[:0], lengths=other._lengths[:0],
                    temperature=other._temperature[:0], top_p=other._top_p[:0],
                    controls=other._controls[:0], given=other._given[:0], uniforms=other._uniforms.select([]))
