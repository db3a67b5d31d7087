"""Shared by the deployment tests (C++ with TorchScript and AOTInductor, Node, the browser):
the model they run, and the reference they are held to, which is mpx itself: the notes
`mpx run` makes for the same primer, seed, sampling and controls (mpx's Generator, one intra-op thread
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
__all__ = ["CONTROL_CASES", "ROOT", "SEED_MIDI", "assert_same_notes", "contract_v2_spec",
           "deploy_model", "read_midi_notes", "reference_notes", "spec_of"]


# Controls as a consumer's flags ask for them, and as mpx's API does (controls, key): name ->
# (flags, controls, key). "none" / None: not given (the model's choice).
CONTROL_CASES = {
    "density and key": (["--density", "6", "--key", "D minor"], {"density": 6.0}, "D minor"),
    "dynamics and articulation": (["--velocity-mean", "40", "--duration-median", "0.2"],
                                  {"velocity_mean": 40.0, "duration_median": 0.2}, None),
    "register": (["--pitch-mean", "72", "--pitch-spread", "5"], {"pitch_mean": 72.0, "pitch_spread": 5.0}, None),
    "chords, density not given": (["--chord-share", "0.4", "--density", "none", "--key", "F# major"],
                                  {"chord_share": 0.4, "density": None}, "F# major"),
}


def contract_v2_spec(spec: dict) -> dict:
    """A spec as a contract v2 export wrote it (its version; v2 had no controls)."""
    old = {k: v for k, v in spec.items() if k != "controls"}
    old["spec_version"] = 2
    return old


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
                    top_p: float | list[float] | None = None, controls: dict[str, float | None] | None = None,
                    key: str | None = None) -> np.ndarray:
    """mpx's notes: the last seq_len notes of `primer` prime the model, n notes follow, with
    the controls asked for (name -> value, None = not given) and `key`; the rest the primer's."""
    gen = load(model, threads=1)
    return gen.generate(primer, n, seed=seed, temperature=None if temperature is None else tuple(np.atleast_1d(temperature)),
                        top_p=None if top_p is None else tuple(np.atleast_1d(top_p)), controls=controls, key=key)


def assert_same_notes(got: np.ndarray, want: np.ndarray, label: str = "") -> None:
    """Pitches and velocities identical, step and duration within TIME_ATOL."""
    assert got.shape == want.shape, f"{label}: shape {got.shape} vs {want.shape}"
    differ = np.flatnonzero((got[:, 0] != want[:, 0]) | (got[:, 3] != want[:, 3]))
    assert differ.size == 0, (f"{label}: pitch/velocity differ first at note {differ[0]}: "
                              f"{got[differ[0]]} vs mpx {want[differ[0]]}")
    np.testing.assert_allclose(got[:, 1:3], want[:, 1:3], rtol=0, atol=TIME_ATOL, err_msg=label)
