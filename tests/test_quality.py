"""The bundled model makes music with its default settings: 512 notes from seeds of pieces it
never saw (the test side of its split), checked by mpx.runtime.quality: >= 24 distinct pitches,
no run of one pitch longer than 8, < 2% of notes under 10 ms, and a median step within a factor
2 of the seed's. The tutorial's generation collapses to one repeated pitch within a few dozen
notes; these are the tests that ours does not.

The tempo check is the bundled model's known weakness (model card, "Limits"): free-running, its
timing does not follow the seed's tempo piece by piece, and it passes in about half of the runs
(57% over all 22 test pieces x 2 runs: benchmarks/sampling_sweep.py). So it is held to the
README's own seed, always, and to a stated floor over the five test seeds; the other three
checks hold on every run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mpx.runtime import load, read_notes
from mpx.runtime.quality import failed_checks, failures, measure

from conftest import ARTIFACTS, SEEDS_DIR

SEEDS = sorted(SEEDS_DIR.glob("*.mid"))
RNG_SEEDS = (0, 1, 2)
TEMPO_PASS_FLOOR = 1 / 3  # of the 15 runs below (measured 7 / 15)


@pytest.fixture(scope="module")
def bundled():  # type: ignore[no-untyped-def]
    return load()  # the bundled ONNX model, default backend


@pytest.fixture(scope="module")
def runs(bundled) -> dict[tuple[str, int], dict[str, str]]:  # type: ignore[no-untyped-def]
    """The checks missed, per (seed, rng seed), by 512 default-settings notes."""
    out = {}
    for seed_file in SEEDS:
        seed = read_notes(seed_file)
        for rng_seed in RNG_SEEDS:
            out[seed_file.stem, rng_seed] = failed_checks(measure(bundled.generate(seed, 512, seed=rng_seed), seed))
    return out


def test_default_generation_is_varied_and_never_clicks(runs) -> None:  # type: ignore[no-untyped-def]
    other = {run: [p for name, p in problems.items() if name != "tempo"] for run, problems in runs.items()}
    assert {run: p for run, p in other.items() if p} == {}


def test_tempo_check_holds_above_its_floor(runs) -> None:  # type: ignore[no-untyped-def]
    passed = [run for run, problems in runs.items() if "tempo" not in problems]
    print(f"tempo check passed in {len(passed)} of {len(runs)} runs: {sorted(passed)}")
    assert len(passed) / len(runs) >= TEMPO_PASS_FLOOR, runs


@pytest.mark.parametrize("rng_seed", RNG_SEEDS)
def test_the_readme_seed_passes_every_check(bundled, rng_seed: int) -> None:  # type: ignore[no-untyped-def]
    seed = read_notes(ARTIFACTS / "seed.mid")
    figures = measure(bundled.generate(seed, 512, seed=rng_seed), seed)
    assert failures(figures) == [], figures


def test_the_checks_catch_the_tutorials_collapse() -> None:
    import numpy as np
    seed = read_notes(SEEDS[0])
    collapsed = np.tile([[60.0, 0.1, 0.005]], (512, 1)).astype(np.float32)
    problems = " / ".join(failures(measure(collapsed, seed)))
    for symptom in ("1 distinct pitches", "a run of 512 repeated pitches", "100.0% of notes shorter"):
        assert symptom in problems
