"""The libtorch examples (examples/libtorch), built once per session, against mpx.

mpx_generate runs music_producter.pt through the generation protocol (docs/contract.md, "Generation
protocol"); its notes must equal `mpx run`'s for the same primer, seed, temperature and top-p
(pitches and velocities identical, times within 1e-5), sampled and greedy, on the bundled model.
Both sides use one intra-op thread and torch's own kernels (no oneDNN), as mpx's torch
backends do. test_pt2.py holds the AOTInductor program to the same.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SEEDS_DIR
from deploy import CONTROL_CASES, assert_same_notes, contract_v2_spec, deploy_model, reference_notes, spec_of
from mpx.runtime import read_notes

pytestmark = pytest.mark.slow  # every test here needs the C++ build (~1 min on 2 cores)

PRIMER_NOTES = 25
NOTES = 200
DEFAULT_VELOCITY = 100.0  # what the C++ programs (and mpx) assume for 3-column primers


@pytest.fixture(scope="session")
def torchscript_model() -> Path:
    return deploy_model(".pt")


@pytest.fixture(scope="session")
def binary(cpp_programs: dict[str, Path]) -> Path:
    return cpp_programs["torchscript"]


def save_torchscript_with_spec(model: Path, spec: dict[str, Any], path: Path) -> Path:
    """The same module saved with another spec (what a hand-edited archive would carry)."""
    import torch
    torch.jit.save(torch.jit.load(str(model)), str(path), _extra_files={"mpx_spec.json": json.dumps(spec)})
    return path


# -- primers ------------------------------------------------------------------------------------
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
        made = {seed.stem: write_csv(read_notes(seed)[-PRIMER_NOTES:], out / f"{seed.stem}.csv")
                for seed in sorted(SEEDS_DIR.glob("*.mid"))}
        assert made, f"no seeds in {SEEDS_DIR}"
        return made
    return make()


@pytest.fixture(scope="session")
def primer(primers: dict[str, Path]) -> Path:
    return next(iter(primers.values()))


# -- the Python side: mpx ---------------------------------------------------------------------------
def python_notes(model: Path, primer: np.ndarray, n: int, seed: int, temperature: list[float] | None = None,
                 top_p: list[float] | None = None, controls: dict[str, float | None] | None = None,
                 key: str | None = None) -> np.ndarray:
    """The notes `mpx run` makes from this primer (its last seq_len notes prime the model, as in
    C++), with these controls (the rest the primer's)."""
    return reference_notes(model, primer, seed, n, temperature, top_p, controls, key)


def four(value: str) -> list[float]:
    values = [float(v) for v in value.split(",")]
    return values * 4 if len(values) == 1 else values


def run_program(exe: Path, model: Path, primer: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), str(model), str(primer), str(out), *args],
                          capture_output=True, text=True, timeout=600)


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


@pytest.mark.parametrize("case", list(CONTROL_CASES))
def test_controls_give_mpxs_notes(binary: Path, torchscript_model: Path, primers: dict[str, Path], tmp_path: Path,
                                  case: str) -> None:
    """The control flags as `mpx run`'s: the ones asked for, their families released, the rest
    the primer's (runtime/controls.resolve)."""
    flags, controls, key = CONTROL_CASES[case]
    name = sorted(primers)[list(CONTROL_CASES).index(case) % len(primers)]
    out = tmp_path / "out.csv"
    done = run_program(binary, torchscript_model, primers[name], out, "--notes", str(NOTES), "--seed", "9",
                       "--temperature", "0.9", *flags)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    primer = read_csv(primers[name])
    want = python_notes(torchscript_model, primer, NOTES, 9, [0.9] * 4, None, controls, key)
    assert_same_notes(read_csv(out), want, f"{name}, {case}")
    assert not np.array_equal(want, python_notes(torchscript_model, primer, NOTES, 9, [0.9] * 4)), \
        f"{case}: the controls change nothing"


def test_show_controls_says_what_is_fed(binary: Path, torchscript_model: Path, tmp_path: Path) -> None:
    """--show-controls: one line per control on stderr, the primer's (its last seq_len notes) or asked."""
    from mpx.runtime import controls as ctl
    seed = read_notes(SEEDS_DIR / "bach_prelude_bwv873.mid")
    primer = write_csv(seed[:300], tmp_path / "long.csv")
    done = run_program(binary, torchscript_model, primer, tmp_path / "out.csv", "--notes", "2",
                       "--velocity-mean", "50", "--density", "none", "--show-controls")
    assert done.returncode == 0, done.stderr
    lines = [line.removeprefix("mpx_generate: ") for line in done.stderr.splitlines()]
    fed = ctl.resolve(seed[:300][-spec_of(torchscript_model).seq_len:], {"velocity_mean": 50.0, "density": None})
    assert [line.split()[0] for line in lines] == list(ctl.CONTROLS), done.stderr
    assert lines[ctl.CONTROLS.index("velocity_mean")] == "velocity_mean 50 (asked)"
    assert "not given" in lines[0] and "as asked" in lines[0]
    for value, line in zip(fed, lines):
        if value >= 0:
            assert float(line.split()[1]) == pytest.approx(float(value), rel=1e-8), line
        else:
            assert "not given" in line, line


def test_a_contract_v2_model_is_refused_in_one_line(binary: Path, torchscript_model: Path, primer: Path,
                                                    tmp_path: Path) -> None:
    old = save_torchscript_with_spec(torchscript_model, contract_v2_spec(spec_of(torchscript_model).to_dict()),
                                     tmp_path / "v2.pt")
    out = tmp_path / "out.csv"
    done = run_program(binary, old, primer, out)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(old) in lines[0] and "follows graph contract v2; this program runs v3" in lines[0]
    assert not out.exists()


def test_aoti_program_follows_the_controls(cpp_programs: dict[str, Path], compiled_artifacts: Path,
                                           torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    """mpx_generate_aoti on the bundled model's AOTInductor package: mpx's notes, controls given."""
    flags, controls, key = CONTROL_CASES["density and key"]
    out = tmp_path / "out.csv"
    done = run_program(cpp_programs["aoti"], compiled_artifacts / "music_producter.aoti.pt2", primer, out,
                       "--notes", str(NOTES), "--seed", "4", *flags)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    sampling = spec_of(torchscript_model).sampling
    want = python_notes(torchscript_model, read_csv(primer), NOTES, 4, list(sampling.temperature),
                        list(sampling.top_p), controls, key)
    assert_same_notes(read_csv(out), want, "AOTInductor, controls")


def test_defaults_come_from_the_spec(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    done = run_program(binary, torchscript_model, primer, out, "--notes", "100", "--seed", "11")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    sampling = spec_of(torchscript_model).sampling
    want = python_notes(torchscript_model, read_csv(primer), 100, 11, list(sampling.temperature), list(sampling.top_p))
    assert_same_notes(read_csv(out), want, "spec defaults")


def test_fallback_defaults_without_spec_sampling(binary: Path, torchscript_model: Path, primer: Path,
                                                 tmp_path: Path) -> None:
    bare = spec_of(torchscript_model).to_dict()
    bare.pop("sampling")
    model = save_torchscript_with_spec(torchscript_model, bare, tmp_path / "bare.pt")
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
    want = python_notes(torchscript_model, with_velocity, 50, 2)
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
    import torch
    path = tmp_path / "v1.pt"
    torch.jit.save(torch.jit.script(V1()), str(path), _extra_files={"mpx_spec.json": "{}"})
    return path


ERRORS = {  # case: (what to change, the text the one line must name)
    "missing-model": "model", "not-a-model": "model", "v1-model": "model", "missing-primer": "primer",
    "bad-csv": "primer", "bad-velocity": "primer", "top-p": "1.5", "temperature": "1,2", "seed": "-3",
    "notes": "ten", "suffix": "out", "unwritable": "out", "unknown-flag": "--frob",
    "chord-share": "--chord-share 2 is out of range", "density": "--density must be a number",
    "key": "--key 'H' is not a key",
}
CONTROL_ERRORS = {"chord-share": ["--chord-share", "2"], "density": ["--density", "abc"], "key": ["--key", "H"]}


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
    elif case in CONTROL_ERRORS:
        extra = CONTROL_ERRORS[case]
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


def test_an_existing_output_needs_force(binary: Path, torchscript_model: Path, primer: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("the user's file\n")
    refused = run_program(binary, torchscript_model, primer, out, "--notes", "4")
    assert refused.returncode == 1 and f"{out}: exists; pass --force" in refused.stderr
    assert out.read_text() == "the user's file\n"
    replaced = run_program(binary, torchscript_model, primer, out, "--notes", "4", "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert len(read_csv(out)) == 4
    kept = primer.read_bytes()
    into_input = run_program(binary, torchscript_model, primer, primer, "--notes", "4", "--force")
    assert into_input.returncode == 1 and "is the input" in into_input.stderr
    assert primer.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_bench_reports_the_primer_it_used(binary: Path, torchscript_model: Path, tmp_path: Path) -> None:
    seed = read_notes(SEEDS_DIR / "bach_prelude_bwv873.mid")
    long_primer = write_csv(seed[:300], tmp_path / "long.csv")  # longer than the model's seq_len
    seq_len = spec_of(torchscript_model).seq_len
    done = run_program(binary, torchscript_model, long_primer, tmp_path / "out.csv", "--notes", "80", "--bench")
    assert done.returncode == 0, done.stderr
    assert f"primer of {min(seq_len, 300)} notes included" in done.stdout, done.stdout
