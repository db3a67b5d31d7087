"""The notes every backend makes for the bundled seed, recorded when the bundled model became
contract v3 (tests/data/reference/notes-v3.npz, by `python tests/reference_notes.py --record`):
the same seed must keep giving the same notes, bit for bit, on every backend. (notes-v2.npz,
recorded before the generation session replaced v2's five rollouts, went with the v2 model.)

Each case is generated through the public API (`Generator.generate`), except `progress`, which
goes through `mpx run`'s library call with a progress hook (it had its own copy of the rollout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conftest import ARTIFACTS, DATA

REFERENCE = DATA / "reference" / "notes-v3.npz"
PRIMER = ARTIFACTS / "seed.mid"

# case -> (number of notes, options)
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    **{f"seed{s}/k{k}/{mode}": (48, {"seed": s, "num_outputs": k, "mode": mode})
       for s in (0, 1, 2) for k in (1, 3) for mode in ("stateful", "window")},
    "mixed/k2/stateful": (48, {"seed": 7, "num_outputs": 2, "temperature": (1.3, 0.0, 0.7, 0.5),
                               "top_p": (1.0, 0.8, 0.9, 0.6)}),
    "primer1/k3/stateful": (32, {"seed": 3, "num_outputs": 3, "primer_notes": 1}),
    "primer5/k1/window": (32, {"seed": 4, "primer_notes": 5, "mode": "window"}),
    # contract v3: controls the model follows, a key, and one take per row with its own settings
    "controls/k2/stateful": (48, {"seed": 8, "num_outputs": 2, "key": "D minor",
                                  "controls": {"density": 6.0, "velocity_mean": 50.0}}),
    "takes/k3/stateful": (40, {"seed": 9, "num_outputs": 3, "takes": (
        {"temperature": 0.0}, {"top_p": 0.8, "controls": {"pitch_mean": 72.0}}, {"key": "G major"})}),
}
PROGRESS_CASE = "progress/k2/stateful"  # 40 notes, seed 5, two outputs, through generate_files


def reference(backend: str, case: str) -> np.ndarray:
    with np.load(REFERENCE) as arrays:
        return arrays[f"{backend}/{case}"]


def generate_case(generator: Any, case: str) -> np.ndarray:
    from mpx.runtime import read_notes
    from mpx.runtime.generate import Take
    n, options = CASES[case]
    if "takes" in options:
        options = {**options, "takes": tuple(Take(**take) for take in options["takes"])}
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


def record(path: Path = REFERENCE) -> None:
    """Write every backend's notes (pt2 and AOTInductor exported from the bundled checkpoint into
    a temporary folder: about two minutes). Only when the bundled model changes."""
    import tempfile

    from mpx.export.api import export_artifacts
    from mpx.export.options import ExportOptions
    from mpx.runtime import load
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for fmt in ("pt2", "aoti"):
            export_artifacts(ARTIFACTS / "model.safetensors", folder, ExportOptions(format=fmt), echo=print)
        models = {"onnx": ARTIFACTS / "music_producter.onnx", "torchscript": ARTIFACTS / "music_producter.pt",
                  "eager": ARTIFACTS / "model.safetensors", "pt2": folder / "music_producter.pt2",
                  "aoti": folder / "music_producter.aoti.pt2"}
        for name, model in models.items():
            gen = load(model, threads=1)
            for case in sorted(CASES):
                arrays[f"{name}/{case}"] = generate_case(gen, case)
            (folder / name).mkdir()
            arrays[f"{name}/{PROGRESS_CASE}"] = generate_progress_case(gen, folder / name)
            print(f"{name}: {len(CASES) + 1} cases")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {len(arrays)} arrays")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python tests/reference_notes.py --record")
    record()
