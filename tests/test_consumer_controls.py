"""The controls of contract v3 as the consumers compute them, held to mpx's own definitions
(runtime/controls.py) bit for bit: the JavaScript of examples/web/mpx.js (the page and the Node
script) and the C++ of examples/libtorch/controls.cpp (both libtorch programs).

The runs: windows and whole files of real piano MIDI (tests/data, the bundled seed), random
runs made to hit the boundaries (steps at the 30 ms chord threshold as float32 rounds it,
pitches and velocities at .5, tied and even-count medians), fewer than MIN_NOTES notes, one
chord (no density), primers longer than the window; the resolved controls for the flags a user
gives (families released, the register left to the model); the key names.

Needs node (the JavaScript) and a C++17 compiler (controls.cpp alone, without libtorch: a few
seconds); each half skips with the reason when its tool is missing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ARTIFACTS, ROOT
from mpx.runtime import read_notes
from mpx.runtime.errors import OptionsError

ctl = pytest.importorskip("mpx.runtime.controls", reason="runtime/controls.py (contract v3) is not in this checkout")

MPX_JS = ROOT / "examples" / "web" / "mpx.js"
LIBTORCH = ROOT / "examples" / "libtorch"
DRIVER = ROOT / "tests" / "cpp" / "controls_check.cpp"
DATA = ROOT / "tests" / "data"
F32 = np.float32
# What a user types per control (the flags of the C++ and Node programs, the page's fields).
FLAGS = ("density", "chord_share", "pitch_mean", "pitch_spread", "velocity_mean", "duration_median")


# -- the runs ---------------------------------------------------------------------------------
def real_runs() -> list[np.ndarray]:
    files = [ARTIFACTS / "seed.mid", *sorted((DATA / "seeds").glob("*.mid")), *sorted((DATA / "midi").glob("*.mid"))]
    runs = []
    for path in files:
        notes = read_notes(path)
        runs.append(notes)                                     # the whole file
        runs += [notes[:n] for n in (1, 15, 16, 17)]           # around MIN_NOTES
        runs += [notes[i:i + ctl.WINDOW] for i in range(0, max(len(notes) - ctl.WINDOW, 1), 97)]
    return runs


def random_runs(count: int = 400, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    chord = F32(ctl.CHORD)                                     # 0.0299999993: below 30 ms in float64
    near = [F32(0), chord, np.nextafter(chord, F32(1)), np.nextafter(chord, F32(0)), F32(0.031), F32(0.001)]
    runs = []
    for k in range(count):
        m = int(rng.integers(0, 90))
        pitch = rng.integers(21, 109, m).astype(np.float64)
        pitch[rng.random(m) < 0.2] += 0.5                      # rounding at .5
        steps = np.where(rng.random(m) < 0.4, rng.choice(near, m), rng.exponential(0.15, m))
        if k % 7 == 0:
            steps[:] = rng.choice(near[:2], m)                 # one chord: no density
        durations = rng.choice([0.05, 0.1, 0.1, 0.25, 0.5], m) if k % 2 else rng.exponential(0.3, m)
        velocity = rng.integers(1, 128, m).astype(np.float64)
        velocity[rng.random(m) < 0.2] -= 0.5
        runs.append(np.stack([pitch, steps, durations, np.maximum(velocity, 1)], -1).astype(F32))
    return runs


def edge_runs() -> list[np.ndarray]:
    def run(m: int, step: float, duration: float = 0.25) -> np.ndarray:
        return np.tile(F32([60, step, duration, 80]), (m, 1)) + np.float32([[i % 5, 0, 0, 0] for i in range(m)])
    ties = run(20, 0.1)
    ties[:10, 2] = 0.5                                         # even count, the middle two differ
    order = run(40, 0.0)                                       # tiny steps inside chords: the float64 sum of
    order[1:, 1] = np.float32([3.0, 7e-10, 1.3e-9, 0.7, 3e-10, 0.04, 9e-10, 2.9] * 5)[:39]  # the span is inexact
    return [np.zeros((0, 4), F32), run(1, 0.5), run(ctl.MIN_NOTES - 1, 0.2), run(ctl.MIN_NOTES, 0.2),
            run(24, 0.0), run(24, float(F32(ctl.CHORD))), run(24, 0.5), ties, order, run(21, 0.1, 0.0)]


RUNS = real_runs() + random_runs() + edge_runs()
PRIMERS = [r for r in RUNS if len(r) > ctl.WINDOW][:20] + [r for r in random_runs(40, seed=1) if len(r) > 30]
REQUESTS: list[dict[str, str]] = [
    {}, {"density": "6"}, {"density": "none"}, {"chord_share": "0.5", "duration_median": "0.2"},
    {"pitch_mean": "60"}, {"pitch_spread": "9.5", "velocity_mean": "90"}, {"velocity_mean": "-1"},
    {"key": "D minor"}, {"key": "none"}, {"key": "F# major", "density": "12", "pitch_mean": "72"},
    {"duration_median": "0.04"},
]
KEYS = ["C major", "c", "D minor", "d min", "Bb", "bb", "B", "b minor", "Bbm", "eb min", "  F#   major ", "F♯ minor",
        "E♭", "Cb", "G maj", "A m", "Am", "H", "", "minor", "C dorian", "Bbb", "C#  m", "x major"]


def python_request(asked: dict[str, str]) -> dict[str, float | None]:
    """mpx's requested controls for what a user typed: a number, none, or a key's profile."""
    requested: dict[str, float | None] = {}
    for name, text in asked.items():
        if name == "key":
            profile = None if text == "none" else ctl.key_profile(text)
            requested.update({pc: None if profile is None else float(profile[k]) for k, pc in enumerate(ctl.PITCH_CLASSES)})
        else:
            requested[name] = None if text == "none" else float(text)
    return requested


def python_key(text: str) -> list[float] | None:
    try:
        return ctl.key_profile(text).tolist()
    except OptionsError:
        return None


def assert_bits(got: np.ndarray, want: np.ndarray, label: str) -> None:
    got, want = np.asarray(got, F32), np.asarray(want, F32)
    assert got.shape == want.shape, label
    same = got.view(np.uint32) == want.view(np.uint32)
    assert same.all(), f"{label}: {[ctl.CONTROLS[i] for i in np.flatnonzero(~same)]}: {got[~same]} vs mpx {want[~same]}"


def summaries_are_defined_everywhere() -> None:
    assert len(RUNS) > 500 and any(len(r) < ctl.MIN_NOTES for r in RUNS)
    assert any(ctl.summaries(r)[0] == ctl.NOT_GIVEN and len(r) >= ctl.MIN_NOTES for r in RUNS), "no one-chord run"


# -- JavaScript ---------------------------------------------------------------------------------
JS = """
import { readFileSync } from 'node:fs';
const job = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const f32 = (rows) => Float32Array.from(rows.flat());
const attempt = (fn) => { try { return Array.from(fn()); } catch (err) { return `error: ${err.message}`; } };
console.log(JSON.stringify({
  summaries: job.runs.map((r) => Array.from(mpx.summaries(f32(r)))),
  primer: job.primers.map((r) => Array.from(mpx.primerSummaries(f32(r)))),
  resolve: job.requests.map(([r, asked]) => attempt(() => mpx.resolveControls(f32(job.primers[r]), mpx.requestedControls(asked)))),
  keys: job.keys.map((k) => attempt(() => mpx.keyProfile(k))),
}));
"""


@pytest.fixture(scope="module")
def node() -> str:
    if shutil.which("node") is None:
        pytest.skip("node not installed: the page's and Node's controls are JavaScript")
    if not (ROOT / "examples" / "node_modules" / "midi-file").is_dir():
        pytest.skip("examples/node_modules missing (mpx.js imports midi-file): run make web-deps")
    return str(shutil.which("node"))


def request_pairs() -> list[tuple[int, dict[str, str]]]:
    return [(p, asked) for p in range(0, len(PRIMERS), 3) for asked in REQUESTS]


@pytest.fixture(scope="module")
def js(node: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    job = tmp_path_factory.mktemp("controls-js") / "job.json"
    job.write_text(json.dumps({"runs": [r.tolist() for r in RUNS], "primers": [p.tolist() for p in PRIMERS],
                               "requests": request_pairs(), "keys": KEYS}))
    source = f"import * as mpx from {json.dumps(MPX_JS.as_uri())};\n{JS}"
    done = subprocess.run([node, "--input-type=module", "-e", source, str(job)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_js_summaries_equal_mpxs(js: dict) -> None:
    summaries_are_defined_everywhere()
    for k, (run, got) in enumerate(zip(RUNS, js["summaries"])):
        assert_bits(got, ctl.summaries(run), f"run {k} ({len(run)} notes)")


def test_js_primer_default_is_the_last_window(js: dict) -> None:
    for k, (primer, got) in enumerate(zip(PRIMERS, js["primer"])):
        assert_bits(got, ctl.primer_summaries(primer), f"primer {k} ({len(primer)} notes)")


def test_js_resolves_the_flags_as_mpx(js: dict) -> None:
    for (p, asked), got in zip(request_pairs(), js["resolve"]):
        assert_bits(got, ctl.resolve(PRIMERS[p], python_request(asked)), f"primer {p}, {asked}")


def test_js_key_names(js: dict) -> None:
    for text, got in zip(KEYS, js["keys"]):
        want = python_key(text)
        if want is None:
            assert isinstance(got, str) and "is not a key" in got and f"'{text}'" in got, (text, got)
        else:
            assert_bits(got, want, f"key {text!r}")


def test_js_refuses_bad_values_in_one_line(node: str) -> None:
    cases = {"density 60": "--density 60 is out of range; allowed 0.1..50 onsets/s", "velocity_mean 0": "allowed 1..127",
             "pitch_mean nan": "must be a number", "chord_share 0x1": "must be a number", "duration_median": "must be a number",
             "tempo 3": "unknown control 'tempo'"}
    code = (f"const cases = {json.dumps(list(cases))};\nconsole.log(JSON.stringify(cases.map((c) => {{ const [n, v = ''] = c.split(' ');"
            " try { return String(mpx.requestedControls({[n]: v || ' x'})); } catch (e) { return e.message; } })));")
    source = f"import * as mpx from {json.dumps(MPX_JS.as_uri())};\n{code}"
    done = subprocess.run([node, "--input-type=module", "-e", source], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for (case, expected), message in zip(cases.items(), json.loads(done.stdout)):
        assert expected in message and "\n" not in message, (case, message)


# -- C++ ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("controls-cpp") / "controls_check"
    # the flags of CMakeLists.txt for controls.cpp: C++17, no fused multiply-add
    cmd = [compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-I", str(LIBTORCH), str(LIBTORCH / "controls.cpp"),
           str(DRIVER), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return exe


def note_lines(notes: np.ndarray) -> list[str]:
    return [" ".join(float(v).hex() for v in row) for row in notes.astype(np.float64)]


def ask(exe: Path, lines: list[str]) -> list[str]:
    done = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def numbers(line: str) -> list[float]:
    assert not line.startswith("error"), line
    return [float.fromhex(v) for v in line.split()]


def test_cpp_summaries_equal_mpxs(cpp: Path) -> None:
    lines = []
    for run in RUNS:
        lines += [f"summaries {len(run)}", *note_lines(run)]
    for p in PRIMERS:
        lines += [f"primer {len(p)}", *note_lines(p)]
    answers = ask(cpp, lines)
    assert len(answers) == len(RUNS) + len(PRIMERS)
    for k, (run, got) in enumerate(zip(RUNS, answers)):
        assert_bits(numbers(got), ctl.summaries(run), f"run {k} ({len(run)} notes)")
    for k, (primer, got) in enumerate(zip(PRIMERS, answers[len(RUNS):])):
        assert_bits(numbers(got), ctl.primer_summaries(primer), f"primer {k}")


def test_cpp_resolves_the_flags_as_mpx(cpp: Path) -> None:
    lines = []
    for p, asked in request_pairs():
        lines += [f"resolve {len(PRIMERS[p])} {len(asked)}", *(f"{n} {v}" for n, v in asked.items()), *note_lines(PRIMERS[p])]
    for (p, asked), got in zip(request_pairs(), ask(cpp, lines)):
        assert_bits(numbers(got), ctl.resolve(PRIMERS[p], python_request(asked)), f"primer {p}, {asked}")


def test_cpp_key_names(cpp: Path) -> None:
    for text, got in zip(KEYS, ask(cpp, [f"key {k}" for k in KEYS])):
        want = python_key(text)
        if want is None:
            assert got.startswith("error: ") and "is not a key" in got and f"'{text}'" in got, (text, got)
        else:
            assert_bits(numbers(got), want, f"key {text!r}")


def test_cpp_refuses_bad_values_in_one_line(cpp: Path) -> None:
    cases = {"density 60": "--density 60 is out of range; allowed 0.1..50 onsets/s", "velocity_mean 0": "allowed 1..127",
             "pitch_mean nan": "must be a number", "chord_share 0x1": "must be a number", "duration_median ": "must be a number",
             "tempo 3": "unknown control 'tempo'", "density none": "none", "pitch_spread -1": "-0x1p+0"}
    for (case, expected), answer in zip(cases.items(), ask(cpp, [f"flag {c}" for c in cases])):
        assert expected in answer, (case, answer)
