"""Does generated music look like music? Cheap checks on a generated sequence, against its seed.

The tutorial's generation collapses to one repeated pitch within a few dozen notes; these
checks catch that and its cousins (a handful of pitches, clicks of near-zero length, a tempo
far from the seed's). The bundled model's default sampling settings were chosen by them.
"""
from __future__ import annotations

import dataclasses

import numpy as np


CHECKS = ("distinct", "repeats", "short", "tempo")


@dataclasses.dataclass(frozen=True)
class QualityBar:
    min_distinct_pitches: int = 24
    max_repeat_run: int = 8            # longest run of one pitch, notes
    max_short_fraction: float = 0.02   # notes shorter than short_note
    short_note: float = 0.010          # seconds
    max_step_ratio: float = 2.0        # median step vs the seed's, either way


def longest_run(pitches: np.ndarray) -> int:
    if len(pitches) == 0:
        return 0
    change = np.flatnonzero(np.diff(pitches) != 0)
    bounds = np.concatenate([[-1], change, [len(pitches) - 1]])
    return int(np.diff(bounds).max())


def measure(notes: np.ndarray, seed: np.ndarray, bar: QualityBar = QualityBar()) -> dict[str, float]:
    """The figures the bar is about, for generated notes [N, 3] continuing `seed` [M, 3]."""
    seed_step = float(np.median(seed[:, 1]))
    step = float(np.median(notes[:, 1]))
    return {
        "distinct_pitches": int(len(np.unique(notes[:, 0]))),
        "longest_repeat_run": longest_run(notes[:, 0]),
        "short_fraction": float(np.mean(notes[:, 2] < bar.short_note)),
        "median_step": step,
        "seed_median_step": seed_step,
        "step_ratio": step / seed_step if seed_step > 0 else float("inf"),
    }


def failures(figures: dict[str, float], bar: QualityBar = QualityBar()) -> list[str]:
    """What misses the bar, in words; empty when the music passes."""
    return list(failed_checks(figures, bar).values())


def failed_checks(figures: dict[str, float], bar: QualityBar = QualityBar()) -> dict[str, str]:
    """The checks missed, by name (one of CHECKS), each with its reason in words."""
    out = {}
    if figures["distinct_pitches"] < bar.min_distinct_pitches:
        out["distinct"] = f"{figures['distinct_pitches']} distinct pitches < {bar.min_distinct_pitches}"
    if figures["longest_repeat_run"] > bar.max_repeat_run:
        out["repeats"] = f"a run of {figures['longest_repeat_run']} repeated pitches > {bar.max_repeat_run}"
    if figures["short_fraction"] >= bar.max_short_fraction:
        out["short"] = f"{figures['short_fraction']:.1%} of notes shorter than {bar.short_note * 1000:.0f} ms"
    ratio = figures["step_ratio"]
    if not 1 / bar.max_step_ratio <= ratio <= bar.max_step_ratio:
        out["tempo"] = f"median step {figures['median_step']:.3f} s is {ratio:.2f}x the seed's"
    return out
