"""The portable random stream: counter-based SplitMix64, so that one seed gives one piece of
music from every consumer (Python with any backend, the C++ examples, JavaScript).

All arithmetic is on unsigned 64-bit integers, wrapping modulo 2^64 (docs/contract.md, "Random stream"):

    splitmix64(x) = mix(x + 0x9E3779B97F4A7C15), mix: the SplitMix64 finaliser
    key(seed, stream)        = splitmix64(splitmix64(seed) + stream)
    uniform(seed, stream, i) = (splitmix64(key(seed, stream) + i) >> 40) * 2^-24   (float32, exact)
    note n of a stream takes uniform(seed, stream, 8 n + j) for its columns j = 0..7

Counter-based: any note's numbers are computed directly, so streams, notes and columns never
depend on how many were drawn before (K streams, window or stateful mode, any chunking, rows of
other requests in the same batch).
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from .checks import integer
from .contract import UNIFORMS

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SEED_MAX = 2**64 - 1


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + GAMMA
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def check_seed(seed: object) -> int:
    return integer("seed", seed, 0, SEED_MAX, allowed="0..2^64-1")


def fresh_seed() -> int:
    """A seed from the system's entropy, for a run that was given none (and reports it)."""
    return secrets.randbelow(SEED_MAX + 1)


def keys(seeds: Sequence[int] | np.ndarray, streams: Sequence[int] | np.ndarray) -> np.ndarray:
    """key(seed, stream) of each row: uint64 [R]."""
    with np.errstate(over="ignore"):
        return splitmix64(splitmix64(np.asarray(seeds, np.uint64)) + np.asarray(streams, np.uint64))


def draw(row_keys: np.ndarray, first_notes: np.ndarray, notes: int) -> np.ndarray:
    """The uniforms of notes first_notes[r] .. + notes - 1 of each row: float32 [notes, R, 8]."""
    counter = ((np.asarray(first_notes, np.uint64)[None, :, None] + np.arange(notes, dtype=np.uint64)[:, None, None])
               * np.uint64(UNIFORMS) + np.arange(UNIFORMS, dtype=np.uint64))
    with np.errstate(over="ignore"):
        bits = splitmix64(row_keys[None, :, None] + counter) >> np.uint64(40)
    return bits.astype(np.float32) * np.float32(2.0 ** -24)


def uniforms(seed: int, streams: int, first_note: int, notes: int) -> np.ndarray:
    """The uniforms of notes first_note .. first_note + notes - 1: float32 [notes, streams, 8]."""
    seed = check_seed(seed)
    return draw(keys(np.full(streams, seed, np.uint64), np.arange(streams)), np.full(streams, first_note), notes)


class UniformStream:
    """The uniforms of R rows, note after note, drawn vectorised in blocks.

    Row r is stream `streams[r]` of seed `seeds[r]`, next at note `notes[r]`: its n-th note
    takes uniform(seed, stream, 8 n + j) whatever other rows share the stream. Rows can be
    selected out of a stream and streams joined into one (a batch of requests that changes);
    each row keeps its place, and the next block starts every row where it stands. A block
    holds BLOCK notes, or fewer for many rows (about BLOCK_ROWS_NOTES rows x notes, at least
    16 notes), so that a batch that changes often redraws little."""

    BLOCK = 256
    BLOCK_ROWS_NOTES = 2048

    def __init__(self, seed: int | Sequence[int], streams: int | Sequence[int],
                 first_note: int | Sequence[int] = 0) -> None:
        streams = np.arange(streams) if isinstance(streams, (int, np.integer)) else np.asarray(streams)
        seeds = [check_seed(s) for s in (seed if isinstance(seed, Sequence) else [seed])]
        self._start(keys(np.broadcast_to(np.asarray(seeds, np.uint64), (len(streams),)), streams),
                    np.broadcast_to(np.asarray(first_note, np.int64), (len(streams),)))

    def _start(self, row_keys: np.ndarray, notes: np.ndarray) -> None:
        self.keys = row_keys
        self._first = np.array(notes, np.int64)  # the note of each row at the block's start
        self._block = np.empty((0, len(row_keys), UNIFORMS), np.float32)
        self._offset = 0

    @property
    def rows(self) -> int:
        return len(self.keys)

    @property
    def notes(self) -> np.ndarray:
        """The next note of every row: int64 [R]."""
        return self._first + self._offset

    def next(self) -> np.ndarray:
        """[R, 8]: every row's next note."""
        offset = self._offset
        if offset >= len(self._block):
            self._first = self._first + offset
            self._block = draw(self.keys, self._first, min(self.BLOCK, max(16, self.BLOCK_ROWS_NOTES // max(self.rows, 1))))
            offset = 0
        self._offset = offset + 1
        return self._block[offset]

    def select(self, rows: Sequence[int] | np.ndarray) -> "UniformStream":
        """A stream of some of the rows, each where it stands."""
        index = np.asarray(rows, np.int64)
        return self.joined([self], [index])

    @classmethod
    def joined(cls, streams: Sequence["UniformStream"],
               rows: Sequence[np.ndarray] | None = None) -> "UniformStream":
        """One stream of the rows of several (or of `rows` of each), in order, each where it stands."""
        picks = rows if rows is not None else [np.arange(s.rows) for s in streams]
        out = cls.__new__(cls)
        out._start(np.concatenate([s.keys[i] for s, i in zip(streams, picks)] or [np.zeros(0, np.uint64)]),
                   np.concatenate([s.notes[i] for s, i in zip(streams, picks)] or [np.zeros(0, np.int64)]))
        return out
