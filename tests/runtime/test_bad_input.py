"""Bad input to the runtime's commands (torch-free tier, the bundled ONNX model): one bad file
never stops a corpus, nothing is overwritten without being asked, faults and bad options end
in one line, long work shows progress, and damaged artifact bytes are named."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import GenerationOptions, load, read_notes
from mpx.runtime.atomic import WriteError, write_bytes
from mpx.runtime.errors import MidiError, MpxError
from mpx.runtime.notes_csv import read_csv, write_csv
from mpx.runtime.run import generate_files

from clitools import BAD_KEY, midi_bytes, mpx, one_line_error
from conftest import ARTIFACTS, ROOT


@pytest.fixture(scope="module")
def onnx_model() -> Path:
    return ARTIFACTS / "music_producter.onnx"


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def has_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def test_a_bad_key_signature_is_one_midi_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "badkey.mid"
    path.write_bytes(midi_bytes(BAD_KEY))
    with pytest.raises(MidiError) as caught:
        read_notes(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_whatever_the_parser_raises_becomes_a_midi_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pretty_midi

    class ParserBug(Exception):  # the next exception type a pretty_midi release invents
        pass

    def broken(*args: object, **kwargs: object) -> None:
        raise ParserBug("something new")

    monkeypatch.setattr(pretty_midi, "PrettyMIDI", broken)
    with pytest.raises(MidiError, match="cannot parse MIDI \\(something new\\)"):
        read_notes(midi_bytes(), name="new.mid", fast=False)  # the fast reader's fallback


def test_notes_run_plot_on_a_bad_file_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   onnx_model: Path) -> None:
    bad = tmp_path / "badkey.mid"
    bad.write_bytes(midi_bytes(BAD_KEY))
    commands = [["notes", str(bad), "--out", str(tmp_path / "x.csv")],
                ["run", str(bad), "--model", str(onnx_model), "--out", str(tmp_path / "x.mid")]]
    if has_matplotlib():  # (without it, plot says so first)
        commands.append(["plot", str(bad), "--out", str(tmp_path / "x.png")])
    for args in commands:
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, str(bad), "cannot parse MIDI")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["badkey.mid"]


def test_run_never_replaces_its_seed_even_with_force(capsys: pytest.CaptureFixture[str], seed: Path,
                                                     onnx_model: Path) -> None:
    before = seed.read_bytes()
    for extra in ([], ["--force"]):
        code, _, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--notes", "8",
                           "--out", str(seed), *extra)
        one_line_error(code, err, "is the input", "--out")
    # the same file by another name (a link) is the seed too
    os.link(seed, seed.with_name("alias.mid"))
    code, _, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--out",
                       str(seed.with_name("alias.mid")), "--force")
    one_line_error(code, err, "is the input")
    assert seed.read_bytes() == before


def test_notes_never_rewrites_its_input(capsys: pytest.CaptureFixture[str], seed: Path) -> None:
    before = seed.read_bytes()
    code, _, err = mpx(capsys, "notes", str(seed), "--out", str(seed), "--force")
    one_line_error(code, err, "is the input")
    assert seed.read_bytes() == before


def test_existing_outputs_need_force(capsys: pytest.CaptureFixture[str], seed: Path, onnx_model: Path,
                                     tmp_path: Path) -> None:
    out = tmp_path / "take.mid"
    out.write_bytes(b"the user's own file")
    (tmp_path / "roll.png").write_bytes(b"a picture")
    (tmp_path / "set-2.mid").write_bytes(b"one of many")
    cases = [["run", str(seed), "--model", str(onnx_model), "--notes", "8", "--out", str(out)],
             ["run", str(seed), "--model", str(onnx_model), "--notes", "8", "--out", str(tmp_path / "set.mid"),
              "--num-outputs", "3"],
             ["run", str(seed), "--model", str(onnx_model), "--notes", "8", "--out", str(tmp_path / "new.mid"),
              "--plot", str(tmp_path / "roll.png")],
             ["notes", str(seed), "--out", str(out)],
             ["plot", str(seed), "--out", str(tmp_path / "roll.png")]]
    for args in cases:
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, "exists; pass --force")
    assert out.read_bytes() == b"the user's own file" and not (tmp_path / "new.mid").exists()
    assert not (tmp_path / "set-1.mid").exists()
    code, out_text, err = mpx(capsys, *cases[0], "--force")
    assert code == 0, err
    assert len(read_notes(out)) == 8


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         seed_notes: np.ndarray) -> None:
    from mpx.runtime import atomic
    from mpx.runtime.midi import write_midi
    monkeypatch.setattr(atomic, "_commit", _enospc)
    for write, name in ((write_midi, "x.mid"), (write_csv, "x.csv")):
        with pytest.raises(WriteError, match=f"{name}: no space left on the device"):
            write(seed_notes[:10], tmp_path / name)
    with pytest.raises(WriteError, match="no space left"):
        write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_killed_processes_are_cleaned_live_ones_kept(tmp_path: Path, seed_notes: np.ndarray) -> None:
    from mpx.runtime.midi import write_midi
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".take.mid.mpx-{dead.pid}-0badc0de.tmp"
    stale.write_bytes(b"half")
    stage = tmp_path / f".staging.mpx-{dead.pid}-0badc0de.tmp"
    stage.mkdir()
    (stage / "music_producter.pt").write_bytes(b"half")
    live = tmp_path / f".other.mid.mpx-{os.getppid()}-0badc0de.tmp"
    live.write_bytes(b"being written by a live process")
    users = tmp_path / ".notes.tmp"  # not mpx's naming: never touched
    users.write_bytes(b"")
    write_midi(seed_notes[:5], tmp_path / "out.mid")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, users.name, "out.mid"])


def test_an_os_error_no_library_caught_is_one_line(capsys: pytest.CaptureFixture[str], seed: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.runtime import notes_csv

    def failing(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/some/file")

    monkeypatch.setattr(notes_csv, "read_any", failing)
    code, _, err = mpx(capsys, "notes", str(seed), "--out", str(seed.with_name("x.csv")))
    one_line_error(code, err, "/some/file: Permission denied")


@pytest.mark.parametrize("args, message", [
    (["run", "{seed}", "--notes", "1180591620717411303424"], "--notes must be an integer 1..10,000,000"),
    (["run", "{seed}", "--threads", "100000"], "--threads must be an integer 1..256"),
    (["run", "{seed}", "--num-outputs", "5000"], "--num-outputs must be an integer"),
    (["run", "{seed}", "--seed", "-1"], "--seed must be an integer"),
    (["run", "{seed}", "--temperature", "nan"], "--temperature takes one number or 4"),
    (["run", "{seed}", "--top-p", "inf"], "--top-p takes one number or 4"),
    (["run", "{seed}", "--tempo", "0"], "--tempo must be a number in [1, 1000] bpm"),
    (["run", "{seed}", "--program", "128"], "--program must be an integer 0..127 (a General MIDI program)"),
    (["run", "{seed}", "--primer-notes", "-1"], "--primer-notes must be an integer"),
    (["run", "{seed}", "--out", "{tmp}/x.wav"], "--out {tmp}/x.wav: writes .mid, .midi or .csv files only"),
    (["plot", "{seed}", "--out", "{tmp}/x.png", "--primer-notes", "-1"], "--primer-notes must be an integer >= 0"),
    (["plot", "{seed}", "--out", "{tmp}/x.jpg"], "writes .png files only"),
    (["notes", "{seed}", "--out", "{tmp}/x.txt"], "writes .mid, .midi or .csv files only"),
    (["notes", "{seed}", "--out", "{tmp}/x.csv", "--last", "0"], "--last must be an integer >= 1"),
])


def test_options_out_of_bounds_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                            seed: Path, onnx_model: Path, tmp_path: Path) -> None:
    filled = [a.format(seed=seed, tmp=tmp_path) for a in args]
    if filled[0] == "run":
        filled += ["--model", str(onnx_model)]
    started = time.monotonic()
    code, _, err = mpx(capsys, *filled)
    one_line_error(code, err, message.format(tmp=tmp_path))
    assert time.monotonic() - started < 30  # refused, not attempted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.mid"]


@pytest.mark.parametrize("row, why", [("200,0.1,0.2,80", "pitch 200"), ("60,nan,0.2,80", "NaN"),
                                      ("60,0.1,inf,80", "infinite duration")])


def test_csv_values_that_are_no_note_are_refused_by_notes_and_run(row: str, why: str, tmp_path: Path, onnx_model: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text(f"pitch,step,duration,velocity\n60,0,0.5,80\n{row}\n")
    for args in (["notes", str(csv), "--out", str(tmp_path / "out.mid")],
                 ["run", str(csv), "--model", str(onnx_model), "--out", str(tmp_path / "out.mid")]):
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, f"line 3: {row!r} is not a note")  # the line as the file has it
    assert not (tmp_path / "out.mid").exists()


@pytest.fixture(scope="module")
def generators_onnx(onnx_model: Path):  # type: ignore[no-untyped-def]
    return load(onnx_model)


def test_long_runs_report_progress(generators_onnx, seed: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    result = generate_files(generators_onnx, seed, tmp_path / "out.csv", GenerationOptions(notes=50, seed=3),
                            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 50) for i in range(1, 51)]
    same = generate_files(generators_onnx, seed, tmp_path / "again.csv", GenerationOptions(notes=50, seed=3))
    np.testing.assert_array_equal(result.notes, same.notes)  # the progress path makes the same notes


def test_no_progress_bar_when_not_on_a_terminal(capsys: pytest.CaptureFixture[str], seed: Path, onnx_model: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx import cli  # the module mpx.cli (cli/cli.py)
    monkeypatch.setattr(cli, "PROGRESS_FROM", 100)  # a run long enough for a bar (20,000 notes), sooner
    code, out, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--notes", "250",
                         "--out", str(tmp_path / "long.csv"), "--seed", "0")
    assert code == 0 and err == "" and out.count("\n") == 1
    assert len(read_csv(tmp_path / "long.csv")) == 250


def test_a_huge_roll_is_drawn_capped_in_bounded_time(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="drawing needs the plot extra")
    from mpx.runtime.plot import MAX_DRAWN, piano_roll
    rng = np.random.default_rng(0)
    n = 300_000  # a 5 MB performance
    notes = np.stack([rng.integers(21, 109, n), rng.exponential(0.05, n), rng.exponential(0.3, n),
                      rng.integers(1, 128, n)], axis=1).astype(np.float32)
    started = time.monotonic()
    piano_roll(notes[:100], notes[100:], tmp_path / "big.png", title="big")
    assert time.monotonic() - started < 60  # minutes and GBs before the cap
    assert (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG" and MAX_DRAWN < n


def test_plot_without_matplotlib_fails_before_generating(seed: Path, tmp_path: Path, generators_onnx,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(generators_onnx, "rollout", lambda *a, **k: pytest.fail("generated first"))
    with pytest.raises(MpxError, match=r"plotting needs matplotlib: pip install '\.\[plot\]'"):
        generate_files(generators_onnx, seed, tmp_path / "x.mid", GenerationOptions(notes=8), plot=tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.mid"]


def test_include_primer_and_tempo(capsys: pytest.CaptureFixture[str], seed: Path, onnx_model: Path, tmp_path: Path) -> None:
    import pretty_midi
    out = tmp_path / "with-primer.mid"
    code, text, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--notes", "10", "--seed", "1",
                          "--include-primer", "--tempo", "90", "--out", str(out))
    assert code == 0, err
    assert "wrote" in text and "(138 notes" in text  # the primer's 128 (the spec's seq_len), then 10
    midi = pretty_midi.PrettyMIDI(str(out))
    assert midi.get_tempo_changes()[1][0] == pytest.approx(90.0, rel=1e-4)
    notes = read_notes(out)
    primer = read_notes(seed)[-128:]
    assert len(notes) == 138
    np.testing.assert_array_equal(notes[:128, [0, 3]], primer[:, [0, 3]])


def test_a_midi_too_long_to_read_back_is_written_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mpx.runtime.midi import write_midi
    notes = np.array([[60, 3000.0, 1.0, 80]] * 3, np.float32)  # 150 minutes
    write_midi(notes, tmp_path / "long.mid")
    assert "write a .csv for runs this long" in caplog.text


def test_run_and_eval_help_say_that_a_pt_file_is_a_program(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "eval"):
        code, out, _ = mpx(capsys, command, "--help")
        text = " ".join(out.split())
        assert code == 0 and "is a program" in text and "sources you trust" in text and ".onnx" in text


def test_damaged_archive_and_metadata_bytes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt = bytearray((ARTIFACTS / "music_producter.pt").read_bytes())
    central = pt.find(b"PK\x01\x02")
    pt[central + 6] = 0xFF  # "version needed to extract": zipfile raises NotImplementedError
    (tmp_path / "version.pt").write_bytes(bytes(pt))
    onnx_bytes = bytearray((ARTIFACTS / "music_producter.onnx").read_bytes())
    at = onnx_bytes.find(b'"hidden"')
    onnx_bytes[at + 2] = 0xD1  # invalid UTF-8 inside the spec: onnxruntime's metadata map fails
    (tmp_path / "utf8.onnx").write_bytes(bytes(onnx_bytes))
    for path in (tmp_path / "version.pt", tmp_path / "utf8.onnx"):
        code, _, err = mpx(capsys, "info", str(path))
        one_line_error(code, err, str(path))
    code, _, err = mpx(capsys, "run", str(ROOT / "artifacts" / "seed.mid"), "--model", str(tmp_path / "utf8.onnx"),
                       "--out", str(tmp_path / "x.mid"))
    one_line_error(code, err, "metadata is damaged")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = mpx(capsys, "--version")
    assert code == 0 and out.startswith("mpx ") and out.split()[1][0].isdigit()


def test_help_lists_the_choices(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: choices are not wrapped
    for command, choices in (("run", ("onnx", "torchscript", "eager", "stateful", "window")),
                             ("export", ("torchscript", "onnx", "all", "int8")),
                             ("eval", ("train", "val", "test", "window", "stateful", "both"))):
        code, out, _ = mpx(capsys, command, "--help")
        assert code == 0 and all(c in out for c in choices), (command, out)


def test_the_wheel_carries_the_seed_and_the_repository_its_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.mid" in project["tool"]["setuptools"]["package-data"]["mpx.artifacts"]  # seed.mid
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["project"]["license"] == "MIT" and project["project"]["license-files"] == ["LICENSE"]
    assert "seed-continuation.mid" in (ROOT / ".gitignore").read_text().split()
    assert "plot" in project["project"]["optional-dependencies"]
