"""The notes every backend made for the bundled seed before the generation session replaced the
five rollouts (recorded on main at 5f8e34f, tests/data/reference/notes-v2.npz): the same seed
must keep giving the same notes, bit for bit, on every backend.

Each case is generated through the public API (`Generator.generate`), except `progress`, which
goes through `mpx run`'s library call with a progress hook (it had its own copy of the rollout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conftest import ARTIFACTS, DATA

REFERENCE = DATA / "reference" / "notes-v2.npz"
PRIMER = ARTIFACTS / "seed.mid"

# case -> (number of notes, options)
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    **{f"seed{s}/k{k}/{mode}": (48, {"seed": s, "num_outputs": k, "mode": mode})
       for s in (0, 1, 2) for k in (1, 3) for mode in ("stateful", "window")},
    "mixed/k2/stateful": (48, {"seed": 7, "num_outputs": 2, "temperature": (1.3, 0.0, 0.7, 0.5),
                               "top_p": (1.0, 0.8, 0.9, 0.6)}),
    "primer1/k3/stateful": (32, {"seed": 3, "num_outputs": 3, "primer_notes": 1}),
    "primer5/k1/window": (32, {"seed": 4, "primer_notes": 5, "mode": "window"}),
}
PROGRESS_CASE = "progress/k2/stateful"  # 40 notes, seed 5, two outputs, through generate_files


def reference(backend: str, case: str) -> np.ndarray:
    with np.load(REFERENCE) as arrays:
        return arrays[f"{backend}/{case}"]


def generate_case(generator: Any, case: str) -> np.ndarray:
    from mpx.runtime import read_notes
    n, options = CASES[case]
    return generator.generate(read_notes(PRIMER), n, **options)


def generate_progress_case(generator: Any, folder: Path) -> np.ndarray:
    """The two outputs `mpx run --notes 40 --seed 5 --num-outputs 2` writes (as CSV, which keeps
    float32 exactly), generated with a progress hook."""
    from mpx.runtime import GenerationOptions, read_csv
    from mpx.runtime.run import generate_files
    seen: list[int] = []
    result = generate_files(generator, PRIMER, folder / "out.csv",
                            GenerationOptions(notes=40, seed=5, num_outputs=2),
                            progress=lambda done, total: seen.append(done))
    assert seen[-1] == 40 * 2 or seen[-1] == 40, seen[-3:]
    return np.stack([read_csv(path) for path in result.outputs])
