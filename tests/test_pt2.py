"""torch.export (.pt2) and AOTInductor (.aoti.pt2) artifacts of the bundled model, exported by
`mpx export` (which checks them against eager PyTorch before keeping them), held to more here:
every output within 1e-5 + 1e-5 x |value| at B in {1, 3} and T in {1, 25, 300} (the time axis
stays dynamic: ScanLSTM), the same sampled notes as the checkpoint over 256 notes, and the
AOTInductor C++ program's notes equal to the TorchScript C++ program's. The AOTInductor package
is compiled once per session (conftest.compiled_artifacts)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pt2 export needs it")

from conftest import ARTIFACTS, SEEDS_DIR  # noqa: E402
from deploy import assert_same_notes  # noqa: E402
from mpx.export import pt2  # noqa: E402
from mpx.export.api import export_artifacts  # noqa: E402
from mpx.export.options import ExportOptions  # noqa: E402
from mpx.runtime import load, open_backend, read_notes, zero_state  # noqa: E402
from mpx.runtime.errors import ArtifactError  # noqa: E402
from test_cpp import primers, read_csv, run_program  # noqa: E402,F401

pytestmark = pytest.mark.slow  # exports, an AOTInductor compile, C++ builds

ATOL = RTOL = 1e-5
ROLLOUT = 256
CHECKPOINT = ARTIFACTS / "model.safetensors"


def random_inputs(spec, batch: int, time: int, seed: int) -> tuple[np.ndarray, ...]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    notes = np.stack([rng.integers(0, 128, (batch, time)), rng.exponential(0.2, (batch, time)),
                      rng.exponential(0.5, (batch, time)), rng.integers(1, 128, (batch, time))], -1)
    h, c = (rng.normal(0, 0.5, (spec.layers, batch, spec.hidden)) for _ in range(2))
    return (notes.astype(np.float32), h.astype(np.float32), c.astype(np.float32),
            rng.random((batch, 8)).astype(np.float32), np.float32([1.0, 0.8, 0.8, 0.0]),
            np.float32([0.95, 0.9, 0.9, 1.0]))


def check_outputs(candidate, reference, label: str) -> None:  # type: ignore[no-untyped-def]
    for batch, time in itertools.product((1, 3), (1, 25, 300)):
        args = random_inputs(reference.spec, batch, time, seed=batch * 1000 + time)
        for name, a, b in zip(("next_note", "hn", "cn", "logits"), candidate.run(*args), reference.run(*args)):
            assert a.shape == b.shape, f"{label} {name} B={batch} T={time}: {a.shape} vs {b.shape}"
            gap = np.abs(a - b)
            assert (gap <= ATOL + RTOL * np.abs(b)).all(), f"{label} {name} B={batch} T={time}: {gap.max():.3g}"


@pytest.mark.parametrize("layers,batch_first,bias", [(1, True, True), (2, True, True), (2, False, False)])
def test_scan_lstm_matches_nn_lstm(layers: int, batch_first: bool, bias: bool) -> None:
    torch.manual_seed(layers)
    lstm = torch.nn.LSTM(7, 16, layers, batch_first=batch_first, bias=bias).eval()
    scan = pt2.ScanLSTM(lstm)
    for time in (1, 9):
        x = torch.randn(3, time, 7) if batch_first else torch.randn(time, 3, 7)
        state = (torch.randn(layers, 3, 16), torch.randn(layers, 3, 16))
        with torch.no_grad():
            (y, (h, c)), (y2, (h2, c2)) = lstm(x, state), scan(x, state)
        for a, b in ((y2, y), (h2, h), (c2, c)):
            assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-5


@pytest.mark.parametrize("kind", ["pt2", "aoti"])
def test_compiled_artifacts_follow_the_contract_with_a_dynamic_time_axis(compiled_artifacts: Path, kind: str) -> None:
    path = compiled_artifacts / ("music_producter.pt2" if kind == "pt2" else "music_producter.aoti.pt2")
    candidate = open_backend(path)
    assert candidate.name == kind and not candidate._one_note, "T was specialised: ScanLSTM did not hold"
    assert candidate.spec.config == load(CHECKPOINT).spec.config
    check_outputs(candidate, open_backend(CHECKPOINT), kind)


@pytest.mark.parametrize("kind", ["pt2", "aoti"])
def test_compiled_artifacts_make_the_checkpoints_notes(compiled_artifacts: Path, kind: str) -> None:
    path = compiled_artifacts / ("music_producter.pt2" if kind == "pt2" else "music_producter.aoti.pt2")
    seed_notes = read_notes(SEEDS_DIR / "chopin_etude_op25_4.mid")
    for seed, temperature in itertools.product((0, 1, 2), (None, 1.3)):
        want = load(CHECKPOINT).generate(seed_notes, ROLLOUT, seed=seed, temperature=temperature)
        assert_same_notes(load(path).generate(seed_notes, ROLLOUT, seed=seed, temperature=temperature), want,
                          f"{kind} seed {seed} temperature {temperature}")


def test_time_axis_fallback_primes_note_by_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose LSTM export cannot keep T dynamic (here: ScanLSTM switched off, so nn.LSTM
    specialises T) is exported with T = 1 and fed a longer input one note per call."""
    monkeypatch.setattr(pt2, "supports", lambda lstm: False)
    export_artifacts(CHECKPOINT, tmp_path, ExportOptions(format="pt2"), echo=print)
    candidate = open_backend(tmp_path / "music_producter.pt2")
    assert candidate._one_note
    reference = open_backend(CHECKPOINT)
    args = random_inputs(reference.spec, 3, 25, seed=5)
    args = (args[0], *zero_state(reference.spec, 3), *args[3:])
    for a, b in zip(candidate.run(*args), reference.run(*args)):
        assert (np.abs(a - b) <= ATOL + RTOL * np.abs(b)).all()
    seed_notes = read_notes(SEEDS_DIR / "bach_prelude_bwv873.mid")
    assert_same_notes(load(tmp_path / "music_producter.pt2").generate(seed_notes, 64, seed=1),
                      load(CHECKPOINT).generate(seed_notes, 64, seed=1), "primed note by note")


def test_bad_compiled_files_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt2"
    text.write_text("not an archive")
    for path in (text, tmp_path / "x.aoti.pt2"):
        if path.name.startswith("x"):
            path.write_bytes(b"PK\x03\x04 broken zip")
        with pytest.raises(ArtifactError, match=str(path)):
            open_backend(path)


@pytest.mark.parametrize("temperature", ["1", "0.7", "0"])
def test_aoti_cpp_equals_torchscript_cpp(cpp_programs: dict[str, Path], compiled_artifacts: Path,
                                         primers: dict[str, Path], tmp_path: Path, temperature: str) -> None:
    for seed, name in enumerate(sorted(primers)[:2]):
        flags = ("--notes", str(ROLLOUT), "--seed", str(seed), "--temperature", temperature, "--top-p", "0.9")
        runs = {}
        for kind, model in (("torchscript", ARTIFACTS / "music_producter.pt"),
                            ("aoti", compiled_artifacts / "music_producter.aoti.pt2")):
            out = tmp_path / f"{kind}-{seed}.csv"  # a new output each run: the programs replace none
            done = run_program(cpp_programs[kind], model, primers[name], out, *flags)
            assert done.returncode == 0, done.stderr
            runs[kind] = read_csv(out)
        assert_same_notes(runs["aoti"], runs["torchscript"], f"C++ AOTInductor vs TorchScript, {name}, T {temperature}")


def test_aoti_cpp_errors_are_one_line(cpp_programs: dict[str, Path], primers: dict[str, Path], tmp_path: Path) -> None:
    """A TorchScript file given to the AOTInductor program: one line naming it, no output."""
    model, out = ARTIFACTS / "music_producter.pt", tmp_path / "out.csv"
    done = run_program(cpp_programs["aoti"], model, next(iter(primers.values())), out)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0], done.stderr
    assert not out.exists()
