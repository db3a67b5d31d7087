"""The portable random stream: counter-based SplitMix64, so that one seed gives one piece of
music from every consumer (Python with any backend, the C++ examples, JavaScript).

All arithmetic is on unsigned 64-bit integers, wrapping modulo 2^64 (README, "Random stream"):

    splitmix64(x) = mix(x + 0x9E3779B97F4A7C15), mix: the SplitMix64 finaliser
    key(seed, stream)        = splitmix64(splitmix64(seed) + stream)
    uniform(seed, stream, i) = (splitmix64(key(seed, stream) + i) >> 40) * 2^-24   (float32, exact)
    note n of a stream takes uniform(seed, stream, 8 n + j) for its columns j = 0..7

Counter-based: any note's numbers are computed directly, so streams, notes and columns never
depend on how many were drawn before (K streams, window or stateful mode, any chunking).
"""
from __future__ import annotations

import numpy as np

from .contract import UNIFORMS
from .errors import OptionsError

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
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) <= SEED_MAX:
        raise OptionsError(f"--seed must be an integer 0..2^64-1, got {seed!r}")
    return int(seed)


def uniforms(seed: int, streams: int, first_note: int, notes: int) -> np.ndarray:
    """The uniforms of notes first_note .. first_note + notes - 1: float32 [notes, streams, 8]."""
    key = splitmix64(splitmix64(np.uint64(check_seed(seed))) + np.arange(streams, dtype=np.uint64))
    counter = (np.arange(first_note, first_note + notes, dtype=np.uint64)[:, None, None] * np.uint64(UNIFORMS)
               + np.arange(UNIFORMS, dtype=np.uint64))
    with np.errstate(over="ignore"):
        bits = splitmix64(key[None, :, None] + counter) >> np.uint64(40)
    return bits.astype(np.float32) * np.float32(2.0 ** -24)


class UniformStream:
    """The uniforms of K streams, note after note, drawn vectorised in blocks."""

    BLOCK = 256

    def __init__(self, seed: int, streams: int) -> None:
        self.seed, self.streams = check_seed(seed), streams
        self.note, self.block, self.block_start = 0, np.empty((0, streams, UNIFORMS), np.float32), 0

    def next(self) -> np.ndarray:
        """[K, 8] for the next note."""
        offset = self.note - self.block_start
        if offset >= len(self.block):
            self.block = uniforms(self.seed, self.streams, self.note, self.BLOCK)
            self.block_start, offset = self.note, 0
        self.note += 1
        return self.block[offset]
