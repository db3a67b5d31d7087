"""The libtorch examples (examples/libtorch), built once per session, against contract v2.

mpx_generate runs music_producter.pt through the generation protocol of CONTRACT_V2.md; its
notes must equal the protocol run in Python on the same TorchScript module (pitches and
velocities identical, times within 1e-5), sampled and greedy. Both sides use one intra-op
thread and no oneDNN, as mpx's torch backends do.

The model comes from `contract_v2_stub.contract_model()` (the v2 prototype, random weights)
until the real model is bundled; test_pt2.py imports the session builds from here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

import contract_v2_stub as stub
from conftest import ROOT, SEEDS_DIR

pytestmark = pytest.mark.slow  # every test here needs the C++ build (~1 min on 2 cores)

pytestmark = pytest.mark.slow  # a C++ build

EXAMPLE = ROOT / "examples" / "libtorch"
PRIMER_NOTES = 25
NOTES = 200
TIME_ATOL = 1e-5
DEFAULT_VELOCITY = 100.0  # what the C++ programs assume for 3-column primers

T = TypeVar("T")
_ONCE: dict[str, Any] = {}


def once(key: str, make: Callable[[], T]) -> T:
    """One build per session even when two test modules hold the fixture (pytest makes one
    fixture per module that imports it)."""
    if key not in _ONCE:
        _ONCE[key] = make()
    return _ONCE[key]


# -- the model under test -------------------------------------------------------------------
@pytest.fixture(scope="session")
def v2_model() -> tuple[Any, str]:
    """(eager module, spec JSON). The one line to switch to the real bundled model."""
    return once("model", stub.contract_model)


def save_torchscript(module: Any, spec: str, path: Path) -> Path:
    import torch
    torch.jit.save(torch.jit.script(module), str(path), _extra_files={"mpx_spec.json": spec})
    return path


@pytest.fixture(scope="session")
def torchscript_model(v2_model: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """music_producter.pt of the model under test, the spec in its extra files."""
    module, spec = v2_model
    return once("torchscript", lambda: save_torchscript(
        module, spec, tmp_path_factory.mktemp("v2-model") / "music_producter.pt"))


# -- the build --------------------------------------------------------------------------------
def missing_tools() -> str | None:
    """What the build needs and this machine lacks, or None."""
    if shutil.which("cmake") is None:
        return "cmake not found on PATH"
    cxx = os.environ.get("CXX")
    if not (shutil.which(cxx) if cxx else any(shutil.which(c) for c in ("c++", "g++", "clang++"))):
        return f"no C++ compiler found ({'CXX=' + cxx if cxx else 'c++, g++, clang++'})"
    if not (shutil.which("make") or shutil.which("ninja")):
        return "neither make nor ninja found for cmake to build with"
    return None


def build_examples(build: Path) -> dict[str, Path]:
    """Configure against the pip wheel's libtorch and build both programs (-j2: shared cores)."""
    import torch
    configure = ["cmake", "-S", str(EXAMPLE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if not shutil.which("make"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    programs = {"torchscript": build / "mpx_generate", "aoti": build / "mpx_generate_aoti"}
    for exe in programs.values():
        assert exe.is_file(), f"the build made no {exe}"
    return programs


@pytest.fixture(scope="session")
def cpp_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"torchscript": mpx_generate, "aoti": mpx_generate_aoti}, built once per session."""
    pytest.importorskip("torch", reason="torch not installed: the examples link libtorch")
    missing = missing_tools()
    if missing:
        pytest.skip(f"cannot build the libtorch examples: {missing}")
    return once("cpp", lambda: build_examples(tmp_path_factory.mktemp("libtorch-build")))


@pytest.fixture(scope="session")
def binary(cpp_programs: dict[str, Path]) -> Path:
    return cpp_programs["torchscript"]


# -- primers ------------------------------------------------------------------------------------
def midi_notes(path: Path) -> np.ndarray:
    """[N, 4] notes of a MIDI file as the protocol reads them: non-drum instruments merged,
    ordered by start, pitch, end; step from the previous start, duration, MIDI velocity."""
    import pretty_midi
    midi = pretty_midi.PrettyMIDI(str(path))
    rows = sorted((n.start, n.pitch, n.end, n.velocity)
                  for inst in midi.instruments if not inst.is_drum for n in inst.notes)
    start, pitch, end, velocity = np.array(rows, dtype=np.float64).T
    step = np.diff(start, prepend=start[0])
    return np.column_stack([pitch, step, end - start, velocity]).astype(np.float32)


def write_csv(notes: np.ndarray, path: Path, header: str = "pitch,step,duration,velocity") -> Path:
    lines = [header] + [",".join(f"{v:.9g}" for v in row) for row in notes]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_csv(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    assert lines[0] == "pitch,step,duration,velocity", lines[0]
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]], np.float32).reshape(-1, 4)


@pytest.fixture(scope="session")
def primers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The last 25 notes of each test seed as a 4-column primer CSV."""
    def make() -> dict[str, Path]:
        out = tmp_path_factory.mktemp("primers")
        made = {seed.stem: write_csv(midi_notes(seed)[-PRIMER_NOTES:], out / f"{seed.stem}.csv")
                for seed in sorted(SEEDS_DIR.glob("*.mid"))}
        assert made, f"no seeds in {SEEDS_DIR}"
        return made
    return once("primers", make)


@pytest.fixture(scope="session")
def primer(primers: dict[str, Path]) -> Path:
    return next(iter(primers.values()))


# -- the Python side of the protocol --------------------------------------------------------------
@contextlib.contextmanager
def like_cpp() -> Iterator[None]:
    """One intra-op thread and no oneDNN, as the C++ programs run; restored afterwards."""
    import torch
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


def python_notes(model: Path, primer: np.ndarray, n: int, seed: int, temperature: list[float],
                 top_p: list[float]) -> np.ndarray:
    """The protocol in Python on the TorchScript module, as mpx's TorchScript backend calls it."""
    import torch
    module = torch.jit.load(str(model))
    with like_cpp():
        return stub.generate(module, module.zero_state(1), primer, n, seed, temperature, top_p)


def four(value: str) -> list[float]:
    values = [float(v) for v in value.split(",")]
    return values * 4 if len(values) == 1 else values


def run_program(exe: Path, model: Path, primer: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), str(model), str(primer), str(out), *args],
                          capture_output=True, text=True, timeout=600)


def assert_same_notes(got: np.ndarray, want: np.ndarray, label: str) -> None:
    """Pitches and velocities identical, step and duration within TIME_ATOL."""
    assert got.shape == want.shape, f"{label}: shape {got.shape} vs {want.shape}"
    differ = np.flatnonzero((got[:, 0] != want[:, 0]) | (got[:, 3] != want[:, 3]))
    assert differ.size == 0, (f"{label}: pitch/velocity differ first at note {differ[0]}: "
                              f"{got[differ[0]]} vs {want[differ[0]]}")
    np.testing.assert_allclose(got[:, 1:3], want[:, 1:3], rtol=0, atol=TIME_ATOL, err_msg=label)


# -- tests ----------------------------------------------------------------------------------------
SAMPLED = [(seed, temperature, "0.95") for seed in ("0", "7", str(2**64 - 1)) for temperature in ("1.0", "0.7")]
CASES = SAMPLED + [("0", "0", "0.95"),                                   # greedy
                   ("3", "1,0.6,0.6,0.9", "0.95,0.8,0.8,1")]             # per attribute


@pytest.mark.parametrize("seed,temperature,top_p", CASES)
def test_notes_match_python(binary: Path, torchscript_model: Path, primers: dict[str, Path], tmp_path: Path,
                            seed: str, temperature: str, top_p: str) -> None:
    names = sorted(primers)
    name = names[CASES.index((seed, temperature, top_p)) % len(names)]  # spread the cases over the seeds
    out = tmp_path / "out.csv"
    done = run_program(binary, torchscript_model, primers[name], out, "--notes", str(NOTES), "--seed", seed,
                       "--temperature", temperature, "--top-p", top_p)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    want = python_notes(torchscript_model, read_csv(primers[name]), NOTES, int(seed), four(temperature), four(top_p))
    got = read_csv(out)
    assert_same_notes(got, want, f"{name} seed {seed} T {temperature}")
    if temperature != "0":  # sampling, not a constant: the notes move
        assert len(np.unique(got[:, 0])) > 5


def test_defaults_come_from_the_spec(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    done = run_program(binary, torchscript_model, primer, out, "--notes", "100", "--seed", "11")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    want = python_notes(torchscript_model, read_csv(primer), 100, 11, stub.DEFAULT_TEMPERATURE, stub.DEFAULT_TOP_P)
    assert_same_notes(read_csv(out), want, "spec defaults")


def test_fallback_defaults_without_spec_sampling(binary: Path, v2_model: tuple[Any, str], primer: Path,
                                                 tmp_path: Path) -> None:
    module, spec = v2_model
    bare = json.loads(spec)
    bare.pop("sampling", None)
    model = save_torchscript(module, json.dumps(bare), tmp_path / "bare.pt")
    out = tmp_path / "out.csv"
    done = run_program(binary, model, primer, out, "--notes", "100", "--seed", "5")
    assert done.returncode == 0, done.stderr
    assert "temperature 1, top-p 0.95" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    want = python_notes(model, read_csv(primer), 100, 5, [1.0] * 4, [0.95] * 4)
    assert_same_notes(read_csv(out), want, "fallback defaults")


def test_three_column_primer(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    notes = read_csv(primer)
    old = write_csv(notes[:, :3], tmp_path / "v1.csv", header="pitch,step,duration")
    out = tmp_path / "out.csv"
    done = run_program(binary, torchscript_model, old, out, "--notes", "50", "--seed", "2")
    assert done.returncode == 0, done.stderr
    assert f"velocity {DEFAULT_VELOCITY:.0f} assumed" in done.stderr and str(old) in done.stderr
    with_velocity = np.column_stack([notes[:, :3], np.full(len(notes), DEFAULT_VELOCITY, np.float32)])
    want = python_notes(torchscript_model, with_velocity, 50, 2, stub.DEFAULT_TEMPERATURE, stub.DEFAULT_TOP_P)
    assert_same_notes(read_csv(out), want, "3-column primer")


def test_midi_output(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    """OUT.mid holds the notes OUT.csv holds, velocities included: type 0, 960 ticks, 120 bpm."""
    import mido  # pretty_midi's own MIDI parser

    args = ("--notes", "64", "--seed", "3")
    assert run_program(binary, torchscript_model, primer, tmp_path / "n.csv", *args).returncode == 0
    done = run_program(binary, torchscript_model, primer, tmp_path / "n.mid", *args)
    assert done.returncode == 0, done.stderr
    notes = read_csv(tmp_path / "n.csv")
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
    # Events, not notes: which of two overlapping notes of one pitch an off event ends is
    # ambiguous in MIDI, so ons are compared with pitch and velocity, offs as a set of ticks.
    # Ticks as the program computes them: seconds summed in double, rounded half away from 0.
    ticks_per_second = 960 * 120 / 60
    starts = np.cumsum(notes[:, 1].astype(np.float64))
    on = np.floor(starts * ticks_per_second + 0.5).astype(int)
    off = np.maximum(np.floor((starts + notes[:, 2]) * ticks_per_second + 0.5).astype(int), on + 1)
    assert sorted(ons) == sorted(zip(on, notes[:, 0].astype(int), notes[:, 3].astype(int)))
    assert sorted(offs) == sorted(off)
    assert len({v for _, _, v in ons}) > 1, "one velocity for every note: velocities were not written"


def _v1_model(tmp_path: Path) -> Path:
    """A TorchScript archive with a spec but v1's forward(notes, h0, c0)."""
    import torch

    class V1(torch.nn.Module):
        def forward(self, notes: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
            return notes, h0, c0
    return save_torchscript(V1(), "{}", tmp_path / "v1.pt")


ERRORS = {  # case: (what to change, the text the one line must name)
    "missing-model": "model", "not-a-model": "model", "v1-model": "model", "missing-primer": "primer",
    "bad-csv": "primer", "bad-velocity": "primer", "top-p": "1.5", "temperature": "1,2", "seed": "-3",
    "notes": "ten", "suffix": "out", "unwritable": "out", "unknown-flag": "--frob",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path, case: str) -> None:
    model, csv, out, extra = torchscript_model, primer, tmp_path / "out.csv", []
    if case == "missing-model":
        model = tmp_path / "nowhere.pt"
    elif case == "not-a-model":
        model = primer
    elif case == "v1-model":
        model = _v1_model(tmp_path)
    elif case == "missing-primer":
        csv = tmp_path / "nowhere.csv"
    elif case in ("bad-csv", "bad-velocity"):
        csv = tmp_path / "bad.csv"
        bad = "62,0.5,abc,80" if case == "bad-csv" else "62,0.5,0.25,0"
        csv.write_text(f"pitch,step,duration,velocity\n60,0.5,0.25,80\n{bad}\n")
    elif case == "suffix":
        out = tmp_path / "out.txt"
    elif case == "unwritable":
        out = tmp_path / "no-such-dir" / "out.csv"
    else:
        flag = {"top-p": "--top-p", "temperature": "--temperature", "seed": "--seed", "notes": "--notes",
                "unknown-flag": "--frob"}[case]
        extra = [flag] if case == "unknown-flag" else [flag, ERRORS[case]]
    done = run_program(binary, model, csv, out, *extra)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    named = {"model": str(model), "primer": str(csv), "out": str(out)}.get(ERRORS[case], ERRORS[case])
    assert named in lines[0], lines[0]
    if case in ("bad-csv", "bad-velocity"):
        assert "line 3" in lines[0]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("out")]
    assert leftovers == [], f"partial output left behind: {leftovers}"
