"""The bundled ONNX model makes the notes it made before the generation session (torch-free
tier; tests/test_reference_notes.py holds the torch backends to the same)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import load

from reference_notes import CASES, generate_case, generate_progress_case, reference


@pytest.fixture(scope="module")
def onnx_generator():  # type: ignore[no-untyped-def]
    return load(None, "onnx", threads=1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_notes_as_before(onnx_generator, case: str) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(generate_case(onnx_generator, case), reference("onnx", case))


def test_mpx_run_with_progress_makes_the_same_notes(onnx_generator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(generate_progress_case(onnx_generator, tmp_path),
                                  reference("onnx", "progress/k2/stateful"))
