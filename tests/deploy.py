"""Shared by the deployment tests (C++ with TorchScript and AOTInductor, Node, the browser):
the model they run, and the reference they are held to, which is mpx itself: the notes
`mpx run` makes for the same primer, seed and sampling (mpx's Generator, one intra-op thread
as the C++ programs run), pitch and velocity identical, times within 1e-5."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import load, read_notes
from mpx.runtime.spec import ModelSpec

from conftest import ARTIFACTS, ROOT

SEED_MIDI = ARTIFACTS / "seed.mid"
TIME_ATOL = 1e-5
__all__ = ["ROOT", "SEED_MIDI", "assert_same_notes", "deploy_model", "read_midi_notes", "reference_notes", "spec_of"]


def deploy_model(suffix: str = ".onnx") -> Path:
    """The bundled artifact a consumer runs ($MPX_DEPLOY_MODEL_DIR overrides the folder)."""
    folder = Path(os.environ.get("MPX_DEPLOY_MODEL_DIR") or ARTIFACTS)
    path = folder / f"music_producter{suffix}"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the deployment tests run the bundled model")
    return path


def spec_of(model: Path) -> ModelSpec:
    return load(model).spec


def read_midi_notes(path: str | os.PathLike[str]) -> np.ndarray:
    return read_notes(path)


def reference_notes(model: Path, primer: np.ndarray, seed: int, n: int,
                    temperature: float | list[float] | None = None,
                    top_p: float | list[float] | None = None) -> np.ndarray:
    """mpx's notes: the last seq_len notes of `primer` prime the model, n notes follow."""
    gen = load(model, threads=1)
    return gen.generate(primer, n, seed=seed, temperature=None if temperature is None else tuple(np.atleast_1d(temperature)),
                        top_p=None if top_p is None else tuple(np.atleast_1d(top_p)))


def assert_same_notes(got: np.ndarray, want: np.ndarray, label: str = "") -> None:
    """Pitches and velocities identical, step and duration within TIME_ATOL."""
    assert got.shape == want.shape, f"{label}: shape {got.shape} vs {want.shape}"
    differ = np.flatnonzero((got[:, 0] != want[:, 0]) | (got[:, 3] != want[:, 3]))
    assert differ.size == 0, (f"{label}: pitch/velocity differ first at note {differ[0]}: "
                              f"{got[differ[0]]} vs mpx {want[differ[0]]}")
    np.testing.assert_allclose(got[:, 1:3], want[:, 1:3], rtol=0, atol=TIME_ATOL, err_msg=label)
