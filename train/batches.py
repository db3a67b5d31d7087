"""Batches for truncated back-propagation through time over whole pieces.

Each file is cut into chunks of `seq_len` predictions. Chunks of a file follow one another in
one batch row (a "lane") with the LSTM state carried between them, detached, so training sees
the state built over hundreds of notes, as stateful generation does. At each chunk boundary the
state is reset with probability `reset_prob`, so training also sees the zero state in mid-piece,
as the primer of a generation and the window mode do. A run of chunks between resets is the unit
placed on a lane (longest run first, onto the emptiest lane), so B lanes stay evenly filled even on a small corpus.

Every chunk is trained at every position (teacher forcing): the target is the next note.
With `transpose` > 0 each run is shifted by a random number of semitones in [-transpose,
transpose] (the same shift for all its chunks, so the carried state stays in one key).
A plan is a pure function of (corpus, epoch seed), which makes --resume exact.
"""
from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

import numpy as np

from mpx.runtime import bins
from mpx.runtime.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    starts: np.ndarray   # [S, B] int64: index (in the concatenated notes) of each chunk's first input
    lengths: np.ndarray  # [S, B] int64: predictions in the chunk, 0 = padding
    resets: np.ndarray   # [S, B] bool: zero this lane's state before the chunk
    shifts: np.ndarray   # [S, B] int64: semitones added to every pitch of the chunk
    ends: np.ndarray | None = None  # [S, B] int64: one past the last note of the chunk's file

    @property
    def steps(self) -> int:
        return int(self.starts.shape[0])

    @property
    def predictions(self) -> int:
        return int(self.lengths.sum())


class LanePlanner:
    """Plans over pieces of one note store [N, 4] (a corpus' memory-mapped pack, or arrays
    joined in memory): each piece is (first note in the store, notes)."""

    def __init__(self, store: np.ndarray, starts: Sequence[int] | np.ndarray,
                 lengths: Sequence[int] | np.ndarray, seq_len: int, batch_size: int,
                 reset_prob: float = 0.2, transpose: int = 0, min_lanes: int = 1) -> None:
        starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
        keep = lengths >= 2
        if not keep.any():
            raise ValueError("no file has the two notes a prediction needs")
        self.data = store
        self.offsets = starts[keep]
        self.predictions = lengths[keep] - 1
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.reset_prob = reset_prob
        self.transpose = transpose
        self.min_lanes = min_lanes  # every rank of a distributed run gets a lane, padding if need be

    @classmethod
    def of_notes(cls, notes: Sequence[np.ndarray], seq_len: int, batch_size: int,
                 reset_prob: float = 0.2, transpose: int = 0) -> "LanePlanner":
        """A planner over separate arrays, joined into one store in memory (evaluation of a few files)."""
        kept = [n for n in notes if len(n) >= 2]
        if not kept:
            raise ValueError("no file has the two notes a prediction needs")
        lengths = np.array([len(n) for n in kept], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return cls(np.concatenate(kept).astype(np.float32), starts, lengths, seq_len, batch_size,
                   reset_prob, transpose)

    def plan(self, rng: np.random.Generator | None = None) -> EpochPlan:
        """rng=None: evaluation order (file by file, state carried through each whole file)."""
        runs = []
        for offset, count in zip(self.offsets, self.predictions):
            runs.extend(self._runs(int(offset), int(count), rng))
        shifts = np.zeros(len(runs), np.int64)
        if rng is not None:
            runs = [runs[i] for i in rng.permutation(len(runs))]
            if self.transpose:
                shifts = rng.integers(-self.transpose, self.transpose + 1, len(runs))
        # Longest runs first, each onto the emptiest lane, keeps the lanes evenly filled (a long
        # run placed last would set the epoch's length alone); equal lengths keep their shuffle.
        order = sorted(range(len(runs)), key=lambda i: -len(runs[i]))
        lanes = max(min(self.batch_size, len(runs)), self.min_lanes)
        return self._place([runs[i] for i in order], shifts[order], lanes)

    def _runs(self, offset: int, count: int, rng: np.random.Generator | None) -> list[list[tuple[int, int, int]]]:
        """Cut one file into chunks (start, length, end of the file), grouped into runs that
        start with a reset."""
        first = int(rng.integers(0, self.seq_len)) if rng is not None else 0
        bounds = [0, *range(first or self.seq_len, count, self.seq_len), count]
        runs: list[list[tuple[int, int, int]]] = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            # A chunk shorter than seq_len is padded, so the state after it is not the state
            # after its last note: the chunk that follows starts a new run (a reset).
            if not runs or runs[-1][-1][1] < self.seq_len or (
                    rng is not None and rng.random() < self.reset_prob):
                runs.append([])
            runs[-1].append((offset + a, b - a, offset + count + 1))
        return runs

    @staticmethod
    def _place(runs: list[list[tuple[int, int, int]]], shifts: np.ndarray, lanes: int) -> EpochPlan:
        heap = [(0, lane) for lane in range(lanes)]
        queues: list[list[tuple[int, int, bool, int, int]]] = [[] for _ in range(lanes)]
        for run, shift in zip(runs, shifts):
            used, lane = heapq.heappop(heap)
            queues[lane].extend((start, length, i == 0, int(shift), end)
                                for i, (start, length, end) in enumerate(run))
            heapq.heappush(heap, (used + len(run), lane))
        steps = max(len(q) for q in queues)
        starts = np.zeros((steps, lanes), np.int64)
        lengths = np.zeros((steps, lanes), np.int64)
        resets = np.ones((steps, lanes), bool)
        moved = np.zeros((steps, lanes), np.int64)
        ends = np.zeros((steps, lanes), np.int64)
        for lane, queue in enumerate(queues):
            for s, row in enumerate(queue):
                starts[s, lane], lengths[s, lane], resets[s, lane], moved[s, lane], ends[s, lane] = row
        return EpochPlan(starts, lengths, resets, moved, ends)


def gather(store: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seq_len: int,
           config: ModelConfig, shifts: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch from the store: (inputs [B, T, 4] float32, bins of the next notes [B, T, 4]
    int64, mask [B, T] float32) for chunks starting at `starts` with `lengths` predictions.

    Only these B x T notes are read (from a memory-mapped store, only their pages); the bins
    are computed here, per batch, rather than kept for the whole corpus. With `shifts`, the
    pitch input and the pitch bin move together (transposition).
    """
    pos = np.arange(seq_len)
    index = starts[:, None] + pos
    # (clipped to the store: x[t + 1] is then always the note y[t] bins, which the v3 graph reads
    # as the chain's earlier attributes of row t; positions past the store are masked)
    x = np.asarray(store[np.minimum(index, len(store) - 1)], np.float32)
    y = bins.index(config, np.asarray(store[np.minimum(index + 1, len(store) - 1)], np.float32))
    mask = (pos < lengths[:, None]).astype(np.float32)
    if shifts is not None and shifts.any():
        x[..., 0] = np.clip(x[..., 0] + shifts[:, None], 0, 127)
        y[..., 0] = np.clip(y[..., 0] + shifts[:, None], 0, 127)
    return x, y, mask


# Control dropping in training (controls not given), per lane and chunk: all given, none given,
# or each group given on its own. The groups are the controls a caller sets together (the
# pitch-class profile is one: a key).
CONTROL_GROUPS = ((0,), (1,), (2,), (3,), (4,), (5,), tuple(range(6, 18)))
ALL_GIVEN, NONE_GIVEN, GROUP_GIVEN = 0.3, 0.3, 0.5


@dataclasses.dataclass(frozen=True)
class LaneDraws:
    """The random choices of a batch's lanes about their controls: which controls each lane is
    given, and whether (from which note, by how much: CHANGES) its character changes."""

    given: np.ndarray    # [L, C] bool
    changed: np.ndarray  # [L] bool
    at: np.ndarray       # [L] int64: the first changed note, counted from the chunk's first input
    amounts: dict[str, np.ndarray]  # CHANGES name -> [L]: 0 where nothing changes

    @classmethod
    def draw(cls, rng: np.random.Generator, lanes: int, seq_len: int, change: float) -> "LaneDraws":
        given = given_mask(rng, lanes)
        changed = rng.random(lanes) < change
        at = rng.integers(0, seq_len, lanes)
        amounts = {name: np.where(changed & given[:, column], rng.uniform(low, high, lanes), 0.0)
                   for name, (low, high, column) in CHANGES.items()}
        # the register moves by semitones, and with its pitch-class profile: both given or neither
        amounts["register"] = np.where(given[:, 6], np.round(amounts["register"]), 0.0)
        return cls(given, changed, at, amounts)

    def select(self, lanes: np.ndarray) -> "LaneDraws":
        return LaneDraws(self.given[lanes], self.changed[lanes], self.at[lanes],
                         {k: v[lanes] for k, v in self.amounts.items()})


def conditioned_batch(store: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ends: np.ndarray,
                      seq_len: int, config: ModelConfig, shifts: np.ndarray | None = None,
                      draws: LaneDraws | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`gather` plus the controls of every input position: (inputs [B, T, 4], bins of the next
    notes [B, T, 4], mask [B, T], controls [B, T, C]). The controls of position t are the
    summaries of the notes that follow it in its file (runtime/controls.py), transposed with the
    chunk. With `draws` (LaneDraws, drawn for every lane of the plan and then selected, so a
    lane's choices do not depend on which rank trains it), a lane's controls not given are
    NOT_GIVEN, and a lane that changes character does so from note `at` on (CHANGES: tempo,
    articulation, dynamics, register, each only where its control is given): the changed notes
    are the inputs and targets from there and the controls describe them, so the model learns to
    follow controls that disagree with what it has heard."""
    from mpx.runtime import controls as ctl
    lanes = len(starts)
    span = seq_len + ctl.WINDOW + 1
    raw = np.array(store[np.minimum(starts[:, None] + np.arange(span), len(store) - 1)], np.float32)
    if shifts is not None and shifts.any():
        raw[..., 0] = np.clip(raw[..., 0] + shifts[:, None], 0, 127)
    if draws is not None and draws.changed.any():
        _change(raw, draws)
    pos = np.arange(seq_len)
    x = raw[:, :seq_len]
    y = bins.index(config, raw[:, 1:seq_len + 1])
    mask = (pos < lengths[:, None]).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(raw[:, 1:], ctl.WINDOW, axis=1)[:, :seq_len]
    counts = np.clip(ends[:, None] - (starts[:, None] + pos) - 1, 0, ctl.WINDOW)
    controls = ctl.batch_summaries(windows.transpose(0, 1, 3, 2).reshape(-1, ctl.WINDOW, 4),
                                   counts.reshape(-1)).reshape(lanes, seq_len, ctl.C)
    if draws is not None:
        controls[~draws.given[:, None, :].repeat(seq_len, 1)] = ctl.NOT_GIVEN
    return x, y, mask, controls


# How far a changed lane moves (uniform in these ranges: log factors of tempo and articulation,
# velocity steps, semitones), and which control must be given for each change: a change the
# model cannot know of would teach it that music jumps at random.
CHANGES = {"tempo": (float(np.log(0.6)), float(np.log(1.6)), 0),
           "articulation": (float(np.log(0.6)), float(np.log(1.6)), 5),
           "dynamics": (-20.0, 20.0, 4), "register": (-5.0, 5.0, 2)}


def _change(raw: np.ndarray, draws: LaneDraws) -> None:
    """Change the notes of the chosen lanes from note `at` on, in place (CHANGES)."""
    after = np.arange(raw.shape[1])[None, :] >= draws.at[:, None]

    def from_at(name: str) -> np.ndarray:
        return np.where(after, draws.amounts[name][:, None], 0.0)

    tempo = np.exp(from_at("tempo"))
    raw[..., 1] *= tempo
    raw[..., 2] *= tempo * np.exp(from_at("articulation"))
    raw[..., 3] = np.clip(np.round(raw[..., 3] + from_at("dynamics")), 1, 127)
    raw[..., 0] = np.clip(raw[..., 0] + from_at("register"), 0, 127)


def given_mask(rng: np.random.Generator, lanes: int) -> np.ndarray:
    """[lanes, C] bool: which controls each lane's chunk is given."""
    from mpx.runtime import controls as ctl
    mode = rng.random(lanes)
    groups = rng.random((lanes, len(CONTROL_GROUPS))) < GROUP_GIVEN
    mask = np.zeros((lanes, ctl.C), bool)
    for g, columns in enumerate(CONTROL_GROUPS):
        mask[:, list(columns)] = groups[:, g:g + 1]
    mask[mode < ALL_GIVEN] = True
    mask[(mode >= ALL_GIVEN) & (mode < ALL_GIVEN + NONE_GIVEN)] = False
    return mask
