"""The libtorch example (examples/libtorch): built once per session, checked against mpx.

Greedy generation in C++ must match mpx's TorchScript backend note for note: both run the same
graph in the same libtorch (the pip wheel's), one primer call then one call per note.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ARTIFACTS, ROOT, SEEDS_DIR, run_cli

pytestmark = pytest.mark.slow  # a C++ build

EXAMPLE = ROOT / "examples" / "libtorch"
MODEL = ARTIFACTS / "music_producter.pt"
PRIMER_NOTES = 25
GREEDY_NOTES = 200


def _missing_tools() -> str | None:
    """What the build needs and this machine lacks, or None."""
    if shutil.which("cmake") is None:
        return "cmake not found on PATH"
    cxx = os.environ.get("CXX")
    if not (shutil.which(cxx) if cxx else any(shutil.which(c) for c in ("c++", "g++", "clang++"))):
        return f"no C++ compiler found ({'CXX=' + cxx if cxx else 'c++, g++, clang++'})"
    if not (shutil.which("make") or shutil.which("ninja")):
        return "neither make nor ninja found for cmake to build with"
    return None


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mpx_generate, configured against the pip wheel's libtorch and built (~15-30 s)."""
    torch = pytest.importorskip("torch", reason="torch not installed: the example links libtorch")
    missing = _missing_tools()
    if missing:
        pytest.skip(f"cannot build the libtorch example: {missing}")
    build = tmp_path_factory.mktemp("libtorch-build")
    configure = ["cmake", "-S", str(EXAMPLE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if not shutil.which("make"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    exe = build / "mpx_generate"
    assert exe.is_file(), f"the build made no {exe}"
    return exe


def generate(binary: Path, primer: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), str(MODEL), str(primer), str(out), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def primers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The last 25 notes of each seed as CSV, written by `mpx notes` as a user would."""
    out = tmp_path_factory.mktemp("primers")
    made = {}
    for seed in sorted(SEEDS_DIR.glob("*.mid")):
        path = out / f"{seed.stem}.csv"
        done = run_cli("notes", str(seed), "--out", str(path), "--last", str(PRIMER_NOTES))
        assert done.returncode == 0, done.stderr
        made[seed.stem] = path
    assert made, f"no seeds in {SEEDS_DIR}"
    return made


@pytest.fixture(scope="session")
def primer(primers: dict[str, Path]) -> Path:
    return next(iter(primers.values()))


def python_greedy(primer: Path, n: int) -> np.ndarray:
    """mpx's greedy TorchScript run, on one intra-op thread like the C++ program.

    The thread count matters for big models only (a wide matmul is split differently, which can
    flip a near-tie argmax); it is restored afterwards for the other tests of the session.
    """
    import torch

    from mpx.runtime import load, read_csv
    threads = torch.get_num_threads()
    try:
        gen = load(MODEL, threads=1)
        notes = read_csv(primer)
        return gen.generate(notes, n, temperature=0.0, primer_notes=len(notes))
    finally:
        torch.set_num_threads(threads)


def test_greedy_matches_python(binary: Path, primers: dict[str, Path], tmp_path: Path) -> None:
    from mpx.runtime import read_csv
    for name, primer in primers.items():
        out = tmp_path / f"{name}.csv"
        done = generate(binary, primer, out, "--notes", str(GREEDY_NOTES))
        assert done.returncode == 0, done.stderr
        assert out.read_text().splitlines()[0] == "pitch,step,duration"
        got, want = read_csv(out), python_greedy(primer, GREEDY_NOTES)
        assert got.shape == want.shape == (GREEDY_NOTES, 3)
        differ = np.flatnonzero(got[:, 0] != want[:, 0])
        assert differ.size == 0, (f"{name}: pitch differs first at note {differ[0]}: "
                                  f"C++ {got[differ[0]]} vs Python {want[differ[0]]}")
        np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=0, atol=1e-5, err_msg=name)


def test_sampled_is_reproducible_by_seed(binary: Path, primer: Path, tmp_path: Path) -> None:
    runs = {}
    for label, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / f"{label}.csv"
        done = generate(binary, primer, out, "--notes", "100", "--temperature", "1.0", "--seed", seed)
        assert done.returncode == 0, done.stderr
        runs[label] = out.read_text()
    assert runs["a"] == runs["b"], "the same seed gave different notes"
    assert runs["a"] != runs["c"], "different seeds gave the same 100 notes"
    from mpx.runtime import read_csv
    notes = read_csv(tmp_path / "a.csv")
    assert np.all((notes[:, 0] >= 0) & (notes[:, 0] <= 127) & (notes[:, 0] == np.round(notes[:, 0])))
    assert np.all(notes[:, 1:] >= 0)


def test_midi_output(binary: Path, primer: Path, tmp_path: Path) -> None:
    """OUT.mid holds the notes OUT.csv holds: type 0, 960 ticks per quarter, 120 bpm."""
    import mido  # pretty_midi's own MIDI parser

    from mpx.runtime import read_csv, read_notes
    from mpx.runtime.midi import note_times
    args = ("--notes", "64", "--temperature", "1.0", "--seed", "3")
    assert generate(binary, primer, tmp_path / "n.csv", *args).returncode == 0
    done = generate(binary, primer, tmp_path / "n.mid", *args)
    assert done.returncode == 0, done.stderr
    notes = read_csv(tmp_path / "n.csv")
    assert len(read_notes(tmp_path / "n.mid")) == len(notes)  # mpx reads it back

    midi = mido.MidiFile(tmp_path / "n.mid")
    assert (midi.type, midi.ticks_per_beat, len(midi.tracks)) == (0, 960, 1)
    now, ons, offs, tempos = 0, [], [], []
    for msg in midi.tracks[0]:
        now += msg.time
        if msg.type == "set_tempo":
            tempos.append(msg.tempo)
        elif msg.type == "note_on" and msg.velocity > 0:
            ons.append((now, msg.note, msg.velocity))
        elif msg.type in ("note_on", "note_off"):
            offs.append(now)
    assert tempos == [500_000]  # 120 bpm
    # Events, not pretty_midi's notes: which of two overlapping notes of one pitch an off event
    # ends is ambiguous in MIDI, so ons are compared with their pitch and offs as a set of ticks.
    tick = 60.0 / (120 * 960)
    starts, ends = note_times(notes)
    on = np.round(starts / tick)
    off = np.maximum(np.round(ends / tick), on + 1)  # every note lasts at least one tick
    want = sorted(zip(on, notes[:, 0].astype(int), [100] * len(notes)))
    np.testing.assert_allclose(sorted(ons), want, atol=1.01)  # llround vs numpy round-half-even
    np.testing.assert_allclose(sorted(offs), np.sort(off), atol=1.01)


@pytest.mark.parametrize("case", ["missing-model", "bad-csv", "bad-number"])
def test_errors_are_one_line(binary: Path, primer: Path, tmp_path: Path, case: str) -> None:
    model, csv, extra, named = MODEL, primer, [], ""
    if case == "missing-model":
        model = named = tmp_path / "nowhere.pt"
    elif case == "bad-csv":
        csv = named = tmp_path / "bad.csv"
        csv.write_text("pitch,step,duration\n60,0.5,0.25\n62,0.5,abc\n")
    else:
        extra, named = ["--notes", "ten"], "ten"
    done = subprocess.run([str(binary), str(model), str(csv), str(tmp_path / "out.csv"), *extra],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(named) in lines[0]
    if case == "bad-csv":
        assert "line 3" in lines[0]
    assert not (tmp_path / "out.csv").exists()
