"""The bundled model makes music with its default settings: 512 notes from seeds of pieces it
never saw (the test side of its split) pass the generation checks of mpx.runtime.quality
(>= 24 distinct pitches, no run of one pitch longer than 8, < 2% of notes under 10 ms, a median
step within a factor 2 of the seed's). The tutorial's generation collapses to one repeated
pitch within a few dozen notes; this is the test that ours does not."""
from __future__ import annotations

from pathlib import Path

import pytest

from mpx.runtime import load, read_notes
from mpx.runtime.quality import failures, measure

from conftest import SEEDS_DIR

SEEDS = sorted(SEEDS_DIR.glob("*.mid"))


@pytest.fixture(scope="module")
def bundled():  # type: ignore[no-untyped-def]
    return load()  # the bundled ONNX model, default backend


@pytest.mark.parametrize("seed_file", SEEDS, ids=[p.stem for p in SEEDS])
@pytest.mark.parametrize("rng_seed", [0, 1, 2])
def test_default_generation_passes_the_checks(bundled, seed_file: Path, rng_seed: int) -> None:  # type: ignore[no-untyped-def]
    seed = read_notes(seed_file)
    notes = bundled.generate(seed, 512, seed=rng_seed)
    figures = measure(notes, seed)
    assert failures(figures) == [], f"{seed_file.stem} seed {rng_seed}: {figures}"


def test_the_checks_catch_the_tutorials_collapse() -> None:
    import numpy as np
    seed = read_notes(SEEDS[0])
    collapsed = np.tile([[60.0, 0.1, 0.005]], (512, 1)).astype(np.float32)
    problems = " / ".join(failures(measure(collapsed, seed)))
    for symptom in ("1 distinct pitches", "a run of 512 repeated pitches", "100.0% of notes shorter"):
        assert symptom in problems
