"""Every artifact format of the registry (runtime/formats.py) through every command: exported (or
bundled), opened, described by `mpx info`, generated from by `mpx run` and scored by `mpx eval`,
each giving ONNX's notes for the same seed and ONNX's scores. A format one place forgot fails
here. (The pt2 and AOTInductor files are exported once per session: conftest.compiled_artifacts.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="exporting every format needs torch")

from mpx.export.api import export_artifacts  # noqa: E402
from mpx.export.options import ExportOptions  # noqa: E402
from mpx.runtime import formats, load, read_csv, read_notes  # noqa: E402

from conftest import ARTIFACTS, MIDI_DIR, run_cli  # noqa: E402
from deploy import assert_same_notes  # noqa: E402

pytestmark = pytest.mark.slow  # exports every format, an AOTInductor compile included

NOTES, SEED = 32, 3
EVAL = ("--split", "all", "--mode", "stateful", "--max-files", "2", "--threads", "1", "--json")


@pytest.fixture(scope="module")
def every_format(compiled_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    shipped = tmp_path_factory.mktemp("shipped")
    export_artifacts(ARTIFACTS / "model.safetensors", shipped, ExportOptions(), echo=print)
    files = {name: shipped / formats.get(name).filename for name in formats.SHIPPED}
    files["eager"] = ARTIFACTS / "model.safetensors"
    files.update({name: compiled_artifacts / formats.get(name).filename for name in ("pt2", "aoti")})
    assert set(files) == set(formats.NAMES), "a format of the registry has no file here"
    return files


@pytest.fixture(scope="module")
def onnx_scores() -> dict:
    done = run_cli("eval", str(ARTIFACTS / "music_producter.onnx"), str(MIDI_DIR), *EVAL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["stateful"]


@pytest.mark.parametrize("name", formats.NAMES)
def test_every_format_through_every_command(name: str, every_format: dict[str, Path], onnx_scores: dict,
                                           seed_midi: Path, tmp_path: Path) -> None:
    path = every_format[name]
    fmt = formats.of(path)
    assert fmt.name == name
    backend = formats.open_backend(path, threads=1)
    assert backend.name == name and backend.spec.hidden == 256

    info = run_cli("info", str(path), "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["format"] == name and described["program"] == fmt.program
    assert described["spec"]["config"] == load(ARTIFACTS / "music_producter.onnx").spec.config.to_dict()

    out = tmp_path / "notes.csv"
    run = run_cli("run", str(seed_midi), "--model", str(path), "--notes", str(NOTES), "--seed", str(SEED),
                  "--threads", "1", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert f"{name}, stateful, seed {SEED}" in run.stdout
    want = load(ARTIFACTS / "music_producter.onnx", threads=1).generate(read_notes(seed_midi), NOTES, seed=SEED)
    assert_same_notes(read_csv(out), want, f"{name} vs onnx")

    scored = run_cli("eval", str(path), str(MIDI_DIR), *EVAL)
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["backend"] == name and report["stateful"]["predictions"] == onnx_scores["predictions"]
    for key in ("pitch_ce", "step_ce", "duration_ce", "velocity_ce"):
        np.testing.assert_allclose(report["stateful"][key], onnx_scores[key], rtol=1e-4, err_msg=f"{name} {key}")
