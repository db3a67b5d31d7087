"""The generation report's definitions, on hand-made notes where the answer is known, and the
report as a whole on continuations that are the real one, and the tutorial's collapse."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mpx.runtime import report

from conftest import SEEDS_DIR


def notes_at(onsets: list[float], pitch: float = 60, duration: float = 0.2, velocity: float = 80) -> np.ndarray:
    steps = np.diff(np.asarray(onsets, np.float64), prepend=onsets[0])
    return np.stack([np.full(len(steps), pitch), steps, np.full(len(steps), duration),
                     np.full(len(steps), velocity)], 1).astype(np.float32)


def test_onsets_closer_than_30_ms_are_one_chord() -> None:
    notes = notes_at([0.0, 0.01, 0.025, 0.5, 0.51, 1.0, 1.029, 1.5])
    np.testing.assert_allclose(report.chord_starts(notes[:, 1]), [0.0, 0.5, 1.0, 1.5], atol=1e-6)
    assert report.median_ioi(notes) == pytest.approx(0.5)
    assert report.chord_share(notes) == pytest.approx(7 / 8)  # all but the last note sound in a chord
    assert report.chord_share(notes_at([0.0, 0.1, 0.2])) == 0.0


def test_the_median_step_is_not_the_pace() -> None:
    # a steady pace of 0.4 s with four-note chords: the raw median step is a chord's 5 ms
    onsets = [t + d for t in np.arange(0, 20, 0.4) for d in (0, 0.005, 0.01, 0.015)]
    notes = notes_at(onsets)
    assert np.median(notes[:, 1]) < 0.01
    assert report.median_ioi(notes) == pytest.approx(0.4, rel=1e-6)


def test_overlapping_area_of_histograms() -> None:
    a = notes_at(list(np.arange(100) * 0.25), pitch=60)
    b = a.copy()
    b[:, 0] = 72
    assert report.overlap("pitch", a, a) == pytest.approx(1.0)
    assert report.overlap("pitch", a, b) == 0.0
    half = a.copy()
    half[::2, 0] = 72
    assert report.overlap("pitch", a, half) == pytest.approx(0.5)
    # steps under 30 ms count as 0: a chord's 5, 12 and 29 ms are the same bin as exact 0
    chords = notes_at([0, 0.005, 0.017, 0.046])
    exact = notes_at([0, 0, 0, 0])
    assert report.overlap("step", chords, exact) == pytest.approx(1.0)
    assert report.histogram("velocity", a).argmax() == 80 // 4


def test_a_piece_is_cut_into_seed_real_continuation_and_a_second_segment() -> None:
    long = notes_at(list(np.arange(2000) * 0.1))
    piece = report.cut("long", long)
    assert len(piece.seed) == 125 and len(piece.real) == 512 and len(piece.second) == 512
    short = notes_at(list(np.arange(200) * 0.1))
    piece = report.cut("short", short)
    assert len(piece.seed) == 100 and len(piece.real) == 100  # the middle of a shorter piece
    assert report.cut("tiny", notes_at([0, 0.1, 0.2])) is None


def test_the_real_continuation_meets_every_target_the_collapse_none() -> None:
    from mpx.runtime import read_notes
    pieces = [(p.stem, read_notes(p)) for p in sorted(SEEDS_DIR.glob("*.mid"))]
    cuts = {p.name: p for p in (report.cut(n, x) for n, x in pieces) if p}

    def real(seed: np.ndarray, rng_seed: int) -> np.ndarray:
        piece = next(p for p in cuts.values() if len(p.seed) == len(seed) and np.array_equal(p.seed, seed))
        return piece.real

    def collapse(seed: np.ndarray, rng_seed: int) -> np.ndarray:  # the tutorial's: one pitch, clicks
        return np.tile(np.float32([[60.0, 0.1, 0.005, 100.0]]), (report.GENERATED, 1))

    truth = report.generation_report(real, pieces)
    s = truth["summary"]
    assert s["pieces"] == len(cuts) == 5
    assert s["tempo_fidelity"] == 1.0 and s["short_notes"] < 0.003
    assert s["overlap_pitch"] == pytest.approx(1.0) and s["overlap_velocity"] == pytest.approx(1.0)
    assert set(truth["ceiling"]) == set(s) and truth["ceiling"]["overlap_pitch"] < 1.0  # another segment: less alike
    bad = report.generation_report(collapse, pieces)
    assert set(bad["misses"]) >= {"short_notes", "overlap_pitch", "overlap_duration", "overlap_velocity"}
    assert bad["summary"]["short_notes"] == 1.0
    text = report.format_report(bad)
    assert "MISS" in text and "overlap pitch" in text


def test_spread_picks_evenly_over_a_sequence() -> None:
    assert report.spread(list(range(80)), 24)[:4] == [0, 3, 6, 10] and len(report.spread(list(range(80)), 24)) == 24
    assert report.spread([1, 2], 5) == [1, 2]
    assert math.isnan(report.median_ioi(notes_at([0.0])))
