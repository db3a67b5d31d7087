"""The musician's side of the runtime: a seed's tempo, and a continuation that fell into a loop."""
from __future__ import annotations

import numpy as np
import pytest

from mpx.runtime.musical import estimate_tempo, loop_at_the_end


def performance(bpm: float, beats: int = 64, seed: int = 0) -> np.ndarray:
    """A played-like melody over chords: quarters, eighths and dotted rhythms at `bpm`, the
    tempo drifting by up to 4%, onsets 15 ms off the grid, a chord on every bar's first beat."""
    rng = np.random.default_rng(seed)
    pattern = [1, 0.5, 0.5, 1, 1.5, 0.5, 1, 2, 1, 1]
    beat = 60 / bpm
    times, t, i = [], 0.0, 0
    while t < beats * beat:
        drift = 1 + 0.04 * np.sin(2 * np.pi * t / (16 * beat))
        times.append(t + rng.normal(0, 0.015))
        if round(t / beat) % 4 == 0:
            times += [t + rng.normal(0, 0.008) for _ in range(2)]  # a chord
        t += pattern[i % len(pattern)] * beat * drift
        i += 1
    starts = np.sort(np.maximum(np.array(times), 0))
    n = len(starts)
    return np.stack([rng.integers(48, 84, n), np.diff(starts, prepend=starts[0]), np.full(n, 0.8 * beat),
                     rng.integers(40, 100, n)], axis=1).astype(np.float32)


@pytest.mark.parametrize("bpm", [66, 80, 96, 112, 132, 152])
def test_tempo_of_a_played_melody(bpm: float) -> None:
    estimated = estimate_tempo(performance(bpm))
    assert estimated is not None and abs(estimated / bpm - 1) < 0.05, (bpm, estimated)


def test_too_few_notes_tell_no_tempo() -> None:
    assert estimate_tempo(performance(100)[:5]) is None
    chord = np.array([[60, 0, 1, 80], [64, 0, 1, 80], [67, 0, 1, 80]], np.float32)
    assert estimate_tempo(chord) is None


def test_a_loop_at_the_end_is_described() -> None:
    # what greedy decoding makes of the bundled seed: two pitches, a long step, forever
    loop = np.tile(np.array([[56, 3.8165488, 7.5923514, 38], [44, 3.8165488, 7.5923514, 34]], np.float32), (40, 1))
    assert loop_at_the_end(loop) == "the last 64 notes repeat G#2 and G#3, one every 3.82 s, held 7.59 s"
    assert loop_at_the_end(performance(100)) is None
    assert loop_at_the_end(loop[:10]) is None  # too short to call a loop
