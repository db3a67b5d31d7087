"""The torch backends (TorchScript, eager; pt2 and AOTInductor exported once per session) make
the notes they made before the generation session, for the bundled model and seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the torch backends need torch")

from mpx.runtime import load  # noqa: E402

from conftest import ARTIFACTS  # noqa: E402
from reference_notes import CASES, generate_case, generate_progress_case, reference  # noqa: E402

MODELS = {"torchscript": ARTIFACTS / "music_producter.pt", "eager": ARTIFACTS / "model.safetensors"}


@pytest.fixture(scope="module", params=sorted(MODELS))
def generator(request):  # type: ignore[no-untyped-def]
    return request.param, load(MODELS[request.param], threads=1)


def test_same_seed_same_notes_as_before(generator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, gen = generator
    for case in sorted(CASES):
        np.testing.assert_array_equal(generate_case(gen, case), reference(name, case), err_msg=f"{name} {case}")
    np.testing.assert_array_equal(generate_progress_case(gen, tmp_path), reference(name, "progress/k2/stateful"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pt2", "aoti"])
def test_compiled_artifacts_make_the_same_notes_as_before(compiled_artifacts: Path, kind: str, tmp_path: Path) -> None:
    gen = load(compiled_artifacts / f"music_producter.{'pt2' if kind == 'pt2' else 'aoti.pt2'}", threads=1)
    for case in sorted(CASES):
        np.testing.assert_array_equal(generate_case(gen, case), reference(kind, case), err_msg=f"{kind} {case}")
    np.testing.assert_array_equal(generate_progress_case(gen, tmp_path), reference(kind, "progress/k2/stateful"))
