"""Trustworthy with the user's files and time (issue 14): every failure of the fuzz and fault
audit, re-checked on this code and held by a test. Sections follow the issue's items."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mpx.runtime import GenerationOptions, load, read_notes
from mpx.runtime.atomic import WriteError, write_bytes
from mpx.runtime.contract import SPEC_KEY, TORCHSCRIPT_SPEC_FILE
from mpx.runtime.errors import ArtifactError, MidiError, MpxError, OptionsError, SpecError
from mpx.runtime.info import describe
from mpx.runtime.notes_csv import read_csv, write_csv
from mpx.runtime.run import generate_files

from conftest import MIDI_DIR, ROOT, run_cli, torch_blocked

# -- helpers ----------------------------------------------------------------------------------


def mpx(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mpx ARGS` in this process (the same main() the console script runs): (code, out, err).
    Anything but a SystemExit escaping main() would be a traceback for the user: it fails here."""
    from mpx.cli import main
    argv = sys.argv
    sys.argv = ["mpx", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def midi_bytes(*events: bytes, division: int = 480) -> bytes:
    """A one-track MIDI file of raw events (each with its delta time) plus a few notes."""
    notes = b"".join(b"\x00\x90" + bytes([60 + i, 64]) + b"\x60\x80" + bytes([60 + i, 0]) for i in range(30))
    track = b"".join(events) + notes + b"\x00\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


BAD_KEY = b"\x00\xff\x59\x02\x7f\x05"  # key signature with 127 sharps: mido's KeySignatureError


@pytest.fixture()
def seed(tmp_path: Path, seed_midi: Path) -> Path:
    path = tmp_path / "seed.mid"
    shutil.copy(seed_midi, path)
    return path


@pytest.fixture(scope="module")
def onnx_model(tiny_artifacts: Path) -> Path:
    return tiny_artifacts / "music_producter.onnx"


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def full_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder on a 16 kB file system (a real ENOSPC); needs root to mount, skipped otherwise
    (the monkeypatched tests below cover the same paths everywhere)."""
    path = tmp_path / "full"
    if not _mount_tmpfs(path, "size=16k"):
        pytest.skip("mounting a small tmpfs needs root")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.fixture()
def read_only(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder nobody can write: a read-only tmpfs as root (root ignores permissions), else 0o555."""
    path = tmp_path / "ro"
    if _mount_tmpfs(path, "ro,size=16k"):
        yield path
        subprocess.run(["umount", str(path)], check=False)
        return
    path.mkdir()
    path.chmod(0o555)
    yield path
    path.chmod(0o755)


# == 1. one bad file never stops a corpus =====================================================
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
        read_notes(midi_bytes(), name="new.mid")


def test_a_bad_file_is_skipped_and_counted_by_the_corpus(tmp_path: Path) -> None:
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    for f in sorted(MIDI_DIR.glob("*.mid"))[:3]:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "badkey.mid").write_bytes(midi_bytes(BAD_KEY))
    corpus = load_corpus([tmp_path], cache=NoteCache(tmp_path / "cache"), workers=1)
    assert len(corpus.files) == 3
    assert [Path(f).name for f, _ in corpus.skipped] == ["badkey.mid"]
    assert "key" in corpus.skipped[0][1]


def test_notes_run_plot_on_a_bad_file_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   onnx_model: Path) -> None:
    bad = tmp_path / "badkey.mid"
    bad.write_bytes(midi_bytes(BAD_KEY))
    for args in (["notes", str(bad), "--out", str(tmp_path / "x.csv")],
                 ["run", str(bad), "--model", str(onnx_model), "--out", str(tmp_path / "x.mid")],
                 ["plot", str(bad), "--out", str(tmp_path / "x.png")]):
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, str(bad), "cannot parse MIDI")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["badkey.mid"]


def test_eval_on_files_too_short_to_score_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  tiny_checkpoint: Path) -> None:
    from mpx.runtime.midi import write_midi
    data = tmp_path / "short"
    data.mkdir()
    for i in range(3):  # 10 notes each: window mode (seq_len 25) has nothing to score
        write_midi(np.array([[60 + j, 0.25, 0.2, 80] for j in range(10)], np.float32), data / f"s{i}.mid",
                   tempo=100 + i)
    code, out, err = mpx(capsys, "eval", str(tiny_checkpoint), str(data), "--split", "all", "--mode", "window")
    one_line_error(code, err, "long enough to score")
    assert out == ""  # no table of zeros


# == 2. never overwrite without being asked ===================================================
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


def test_train_into_an_earlier_run_needs_resume_or_force(tmp_path: Path) -> None:
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.loop import train
    from mpx.train.options import TrainOptions
    from conftest import TINY_MODEL
    corpus = load_corpus([MIDI_DIR], cache=NoteCache(tmp_path / "cache"), workers=1, max_files=4)
    options = TrainOptions(model=TINY_MODEL, epochs=1, batch_size=8, seq_len=64, seed=0)
    first = train(corpus, tmp_path / "run", options)
    before = {p.name: p.read_bytes() for p in (first.best, first.last)}
    with pytest.raises(MpxError, match="already holds a training run .*--resume.*--force"):
        train(corpus, tmp_path / "run", options)
    assert {p.name: p.read_bytes() for p in (first.best, first.last)} == before
    with pytest.raises(OptionsError, match="choose one"):
        train(corpus, tmp_path / "run", options, resume=True, force=True)
    again = train(corpus, tmp_path / "run", TrainOptions(model=TINY_MODEL, epochs=1, batch_size=8, seq_len=64, seed=3),
                  force=True)
    assert again.last.read_bytes() != before["last.safetensors"]


def test_a_refused_force_run_keeps_the_old_checkpoints(tmp_path: Path) -> None:
    # --force removes the previous run only when the new one starts to train
    from mpx.train import rundir
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"old best")
    with rundir.claim(run, force=True) as claimed:
        assert (run / "best.safetensors").exists()
        claimed.begin()
        assert not (run / "best.safetensors").exists()


def test_two_trainings_cannot_share_an_out_folder(tmp_path: Path) -> None:
    from mpx.train import rundir
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mpx.train import rundir\n"
         "with rundir.claim(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(MpxError, match=f"another mpx train \\(pid {holder.pid}\\) is writing"):
            with rundir.claim(tmp_path / "run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rundir.claim(tmp_path / "run"):  # kill -9 released the lock
        pass


@pytest.mark.slow
def test_export_writes_into_the_current_folder_and_refuses_to_replace(tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["music_producter.onnx"]
    before = (tmp_path / "music_producter.onnx").read_bytes()
    again = run_cli("export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", cwd=tmp_path)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    assert (tmp_path / "music_producter.onnx").read_bytes() == before


# == 3. every damaged model is refused in one line, when it is opened =========================
def _onnx_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import onnx
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            prop.value = edit(prop.value)
    onnx.save(model, str(target))
    return target


def _json_edit(change):  # type: ignore[no-untyped-def]
    def edit(text: str) -> str:
        spec = json.loads(text)
        change(spec)
        return json.dumps(spec)
    return edit


DAMAGED_SPECS = {
    "spec is not valid JSON": lambda text: text[:-5],
    "config must be a JSON object": _json_edit(lambda s: s.update(config=[32, 1])),
    "unknown keys ['heads']": _json_edit(lambda s: s["config"].update(heads=4)),
    "lacks ['hidden']": _json_edit(lambda s: s["config"].pop("hidden")),
    "spec says 1 LSTM layer(s) of hidden size 128, but its graph has 1 of 32":
        _json_edit(lambda s: s["config"].update(hidden=128)),
    "no valid spec_version": _json_edit(lambda s: s.update(spec_version=0)),
    "no valid spec_version ": _json_edit(lambda s: s.update(spec_version=-3)),
    "hidden must be an integer": _json_edit(lambda s: s["config"].update(hidden="32")),
}


@pytest.mark.parametrize("message", list(DAMAGED_SPECS))
def test_a_damaged_onnx_spec_is_refused_when_opened_and_by_info(message: str, onnx_model: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    damaged = _onnx_with_spec(onnx_model, tmp_path / "damaged.onnx", DAMAGED_SPECS[message])
    with pytest.raises((SpecError, ArtifactError), match=None) as caught:
        load(damaged)
    assert message.strip() in str(caught.value) and str(damaged) in str(caught.value)
    code, _, err = mpx(capsys, "info", str(damaged))
    one_line_error(code, err, message.strip())


def _pt_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import torch
    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    module = torch.jit.load(str(source), _extra_files=extra)  # our own tiny artifact: trusted
    torch.jit.save(module, str(target), _extra_files={TORCHSCRIPT_SPEC_FILE: edit(extra[TORCHSCRIPT_SPEC_FILE])})
    return target


def test_a_torchscript_spec_that_disagrees_with_its_module_is_refused(tiny_artifacts: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    edit = _json_edit(lambda s: s["config"].update(hidden=128, layers=2))
    damaged = _pt_with_spec(tiny_artifacts / "music_producter.pt", tmp_path / "damaged.pt", edit)
    with pytest.raises(ArtifactError, match="spec says 2 LSTM layer\\(s\\) of hidden size 128, but its module has 1 of 32"):
        load(damaged)
    code, _, err = mpx(capsys, "info", str(damaged))
    one_line_error(code, err, "its module has 1 of 32")


def _checkpoint_with_spec(source: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(source), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta[SPEC_KEY] = edit(meta[SPEC_KEY])
    save_file(tensors, str(target), metadata=meta)
    return target


def test_a_damaged_checkpoint_spec_is_refused_by_info_run_and_export(tiny_checkpoint: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for message, edit in (("but its weights has 1 of 32", _json_edit(lambda s: s["config"].update(hidden=128))),
                          ("unknown keys", DAMAGED_SPECS["unknown keys ['heads']"]),
                          ("not valid JSON", DAMAGED_SPECS["spec is not valid JSON"])):
        damaged = _checkpoint_with_spec(tiny_checkpoint, tmp_path / "damaged.safetensors", edit)
        code, _, err = mpx(capsys, "info", str(damaged))
        one_line_error(code, err, str(damaged), message)
        code, _, err = mpx(capsys, "export", "--checkpoint", str(damaged), "--out-dir", str(out))
        one_line_error(code, err, str(damaged))
        assert not out.exists() or list(out.iterdir()) == []


# == 4. untrusted TorchScript is said to be code; info never runs it ==========================
def test_run_and_eval_help_say_that_a_pt_file_is_a_program(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "eval"):
        code, out, _ = mpx(capsys, command, "--help")
        text = " ".join(out.split())
        assert code == 0 and "is a program" in text and "sources you trust" in text and ".onnx" in text


EVIL = """
import sys, torch
from typing import Tuple

class Evil(torch.nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.w, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.w, self.marker, self.training = state[0], state[1], state[2]
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
        written.fill_(66)
        self.w = self.w + written[:3].float()

torch.jit.save(torch.jit.script(Evil(sys.argv[2])), sys.argv[1],
               _extra_files={"mpx_spec.json": sys.argv[3]})
"""


def test_info_never_runs_a_torchscript_file(tiny_artifacts: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    marker = tmp_path / "marker"
    spec = describe(tiny_artifacts / "music_producter.onnx")["spec"]
    evil = tmp_path / "evil.pt"
    maker = tmp_path / "make_evil.py"  # torch.jit.script reads the class's source file
    maker.write_text(EVIL)
    subprocess.run([sys.executable, str(maker), str(evil), str(marker), json.dumps(spec)], check=True, timeout=120)
    assert not marker.exists()
    code, _, err = mpx(capsys, "info", str(evil))
    one_line_error(code, err, str(evil), "found no LSTM")
    assert not marker.exists()  # info read the archive as data
    torch.jit.load(str(evil))  # what info used to do: loading alone runs __setstate__
    assert marker.read_bytes() == b"B" * 8


def test_info_reads_a_good_pt_without_torch_and_warns(tiny_artifacts: Path, tmp_path: Path) -> None:
    env = torch_blocked(tmp_path)
    result = run_cli("info", str(tiny_artifacts / "music_producter.pt"), env=env)
    assert result.returncode == 0, result.stderr
    assert "methods  forward, zero_state" in result.stdout and "is a program" in result.stdout
    assert "LSTM hidden 32" in result.stdout


# == 5. faults end in one line and leave no litter ============================================
def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


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


def test_a_real_full_disk_on_every_writer(full_disk: Path, seed: Path, onnx_model: Path, tiny_checkpoint: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cases = [["run", str(seed), "--model", str(onnx_model), "--notes", "20000", "--out", str(full_disk / "x.mid")],
             ["notes", str(seed), "--out", str(full_disk / "x.csv")],
             ["export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(full_disk)]]
    for args in cases:
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, "no space left on the device")
        assert list(full_disk.iterdir()) == []


def test_read_only_outputs_fail_before_the_work(read_only: Path, seed: Path, onnx_model: Path,
                                                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.train import corpus
    monkeypatch.setattr(corpus, "load_corpus", lambda *a, **k: pytest.fail("corpus parsed first"))
    for args in (["run", str(seed), "--model", str(onnx_model), "--out", str(read_only / "x.mid")],
                 ["notes", str(seed), "--out", str(read_only / "x.csv")],
                 ["train", str(MIDI_DIR), "--out", str(read_only / "run")],
                 ["train", str(MIDI_DIR), "--out", str(seed)]):
        code, _, err = mpx(capsys, *args)
        one_line_error(code, err, str(read_only) if "seed.mid" not in args[-1] else "not a directory")


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


def test_an_export_stopped_midway_leaves_the_previous_set_whole(tiny_checkpoint: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.export import api, parity
    from mpx.export.options import ExportOptions
    api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(), echo=lambda _: None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_check = parity.check

    def stop_at_onnx(eager, candidate, *args, **kwargs):  # type: ignore[no-untyped-def]
        if candidate.name == "onnx":
            raise KeyboardInterrupt  # Ctrl-C after the new .pt was written and checked
        return real_check(eager, candidate, *args, **kwargs)

    monkeypatch.setattr(parity, "check", stop_at_onnx)
    with pytest.raises(KeyboardInterrupt):
        api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(force=True), echo=lambda _: None)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_export_serialises_torchscript_in_memory(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.jit.save to a path aborted the process on a full disk (c10::Error, exit 134)
    import torch
    from mpx.export import api
    from mpx.export.options import ExportOptions
    real_save = torch.jit.save

    def memory_only(module, f, **kwargs):  # type: ignore[no-untyped-def]
        assert not isinstance(f, (str, os.PathLike)), "torch.jit.save must not write a file itself"
        return real_save(module, f, **kwargs)

    monkeypatch.setattr(torch.jit, "save", memory_only)
    api.export_artifacts(tiny_checkpoint, tmp_path, ExportOptions(format="torchscript"), echo=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == ["music_producter.pt"]


def test_an_os_error_no_library_caught_is_one_line(capsys: pytest.CaptureFixture[str], seed: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.runtime import notes_csv

    def failing(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/some/file")

    monkeypatch.setattr(notes_csv, "read_any", failing)
    code, _, err = mpx(capsys, "notes", str(seed), "--out", str(seed.with_name("x.csv")))
    one_line_error(code, err, "/some/file: Permission denied")


@pytest.mark.slow
def test_ctrl_c_while_parsing_the_corpus_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):  # distinct contents: nothing is in the cache
        for f in MIDI_DIR.glob("*.mid"):
            (data / f"{i}-{f.name}").write_bytes(f.read_bytes() + bytes([i]))
    env = {**os.environ, "MPX_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-m", "mpx", "train", str(data), "--out", str(tmp_path / "run"),
                                "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True,
                               # as on a terminal: a CI job run in the background inherits SIGINT ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cache = tmp_path / "cache"
    deadline = time.monotonic() + 120
    while not (cache.exists() and any(p.is_file() for p in cache.rglob("*"))) and time.monotonic() < deadline:
        time.sleep(0.05)  # parsing has begun
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole group
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, f"exit {process.returncode}; stderr {err!r}; stdout {out[-500:]!r}"
    assert err.strip() == "mpx: interrupted"


# == 7. options have bounds ===================================================================
@pytest.mark.parametrize("args, message", [
    (["run", "{seed}", "--notes", "1180591620717411303424"], "--notes must be an integer 1..10,000,000"),
    (["run", "{seed}", "--threads", "100000"], "--threads must be 1..256"),
    (["run", "{seed}", "--num-outputs", "5000"], "--num-outputs must be an integer"),
    (["run", "{seed}", "--seed", "-1"], "--seed must be an integer"),
    (["run", "{seed}", "--temperature", "nan"], "--temperature takes one number or 4"),
    (["run", "{seed}", "--top-p", "inf"], "--top-p takes one number or 4"),
    (["run", "{seed}", "--tempo", "0"], "--tempo must be 1..1000 bpm"),
    (["run", "{seed}", "--program", "128"], "--program must be a General MIDI program"),
    (["run", "{seed}", "--primer-notes", "-1"], "--primer-notes must be an integer"),
    (["run", "{seed}", "--out", "{tmp}/x.wav"], "--out {tmp}/x.wav: writes .mid, .midi or .csv files only"),
    (["train", "{data}", "--out", "{tmp}/run", "--workers", "-1"], "--workers must be 1..256"),
    (["train", "{data}", "--out", "{tmp}/run", "--pitch-weight", "nan"], "--pitch-weight must be a number"),
    (["train", "{data}", "--out", "{tmp}/run", "--lr", "-1"], "--lr must be a number"),
    (["train", "{data}", "--out", "{tmp}/run", "--epochs", "0"], "--epochs must be an integer"),
    (["plot", "{seed}", "--out", "{tmp}/x.png", "--primer-notes", "-1"], "--primer-notes must be an integer >= 0"),
    (["plot", "{seed}", "--out", "{tmp}/x.png", "--primer-notes", "100000"], "fewer than --primer-notes 100000"),
    (["plot", "{seed}", "--out", "{tmp}/x.jpg"], "writes .png files only"),
    (["notes", "{seed}", "--out", "{tmp}/x.txt"], "writes .mid, .midi or .csv files only"),
    (["notes", "{seed}", "--out", "{tmp}/x.csv", "--last", "0"], "--last must be >= 1"),
])
def test_options_out_of_bounds_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                            seed: Path, onnx_model: Path, tmp_path: Path) -> None:
    filled = [a.format(seed=seed, tmp=tmp_path, data=MIDI_DIR) for a in args]
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
        one_line_error(code, err, "note 2 is not a note")
    assert not (tmp_path / "out.mid").exists()


def test_long_runs_report_progress(generators_onnx, seed: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    result = generate_files(generators_onnx, seed, tmp_path / "out.csv", GenerationOptions(notes=50, seed=3),
                            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 50) for i in range(1, 51)]
    same = generate_files(generators_onnx, seed, tmp_path / "again.csv", GenerationOptions(notes=50, seed=3))
    np.testing.assert_array_equal(result.notes, same.notes)  # the progress path makes the same notes


@pytest.fixture(scope="module")
def generators_onnx(onnx_model: Path):  # type: ignore[no-untyped-def]
    return load(onnx_model)


def test_no_progress_bar_when_not_on_a_terminal(capsys: pytest.CaptureFixture[str], seed: Path, onnx_model: Path,
                                                tmp_path: Path) -> None:
    code, out, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--notes", "25000",
                         "--out", str(tmp_path / "long.csv"), "--seed", "0")
    assert code == 0 and err == "" and out.count("\n") == 1
    assert len(read_csv(tmp_path / "long.csv")) == 25000


def test_a_huge_roll_is_drawn_capped_in_bounded_time(tmp_path: Path) -> None:
    from mpx.runtime.plot import MAX_DRAWN, piano_roll
    rng = np.random.default_rng(0)
    n = 300_000  # a 5 MB performance
    notes = np.stack([rng.integers(21, 109, n), rng.exponential(0.05, n), rng.exponential(0.3, n),
                      rng.integers(1, 128, n)], axis=1).astype(np.float32)
    started = time.monotonic()
    piano_roll(notes[:100], notes[100:], tmp_path / "big.png", title="big")
    assert time.monotonic() - started < 60  # minutes and GBs before the cap
    assert (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG" and MAX_DRAWN < n


# == 8. a Generator shared by threads gives the notes it gives alone ==========================
def test_a_generator_shared_by_threads_gives_the_same_notes(tiny_artifacts: Path, tiny_checkpoint: Path,
                                                            seed_notes: np.ndarray) -> None:
    for model in (tiny_checkpoint, tiny_artifacts / "music_producter.pt", tiny_artifacts / "music_producter.onnx"):
        generator = load(model, threads=1)
        alone = {s: generator.generate(seed_notes, 48, seed=s) for s in range(6)}
        together: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def work(s: int) -> None:
            try:
                together[s] = generator.generate(seed_notes, 48, seed=s)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for s in range(6):
            np.testing.assert_array_equal(together[s], alone[s], err_msg=f"{model.name}, seed {s}")


# == 9. a newcomer's rough edges ==============================================================
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


def test_plot_without_matplotlib_fails_before_generating(seed: Path, tmp_path: Path, generators_onnx,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(generators_onnx, "generate_seeded", lambda *a, **k: pytest.fail("generated first"))
    with pytest.raises(MpxError, match=r"plotting needs matplotlib: pip install 'mpx\[plot\]'"):
        generate_files(generators_onnx, seed, tmp_path / "x.mid", GenerationOptions(notes=8), plot=tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.mid"]


def test_include_primer_and_tempo(capsys: pytest.CaptureFixture[str], seed: Path, onnx_model: Path, tmp_path: Path) -> None:
    import pretty_midi
    out = tmp_path / "with-primer.mid"
    code, text, err = mpx(capsys, "run", str(seed), "--model", str(onnx_model), "--notes", "10", "--seed", "1",
                          "--include-primer", "--tempo", "90", "--out", str(out))
    assert code == 0, err
    assert "wrote" in text and "(35 notes" in text  # the primer's 25 (the spec's seq_len), then 10
    midi = pretty_midi.PrettyMIDI(str(out))
    assert midi.get_tempo_changes()[1][0] == pytest.approx(90.0, rel=1e-4)
    notes = read_notes(out)
    primer = read_notes(seed)[-25:]
    assert len(notes) == 35
    np.testing.assert_array_equal(notes[:25, [0, 3]], primer[:, [0, 3]])


@pytest.mark.slow
def test_resume_names_the_flags_it_ignores(tmp_path: Path) -> None:
    env = {"MPX_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("train", str(MIDI_DIR), "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "16",
                    "--embedding", "4", "--batch-size", "8", "--max-files", "4", env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", str(MIDI_DIR), "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "64",
                    "--lr", "0.01", "--batch-size", "8", "--max-files", "4", "--resume", env=env)
    assert again.returncode == 0, again.stderr
    assert "--resume continues the saved run with its own options; ignoring" in again.stderr
    assert "--hidden 64 (the run's own: 16)" in again.stderr and "--lr 0.01 (the run's own: 0.003)" in again.stderr
    assert "--batch-size" not in again.stderr  # given, but the same as the run's


def test_info_shows_the_config_in_use_and_the_licence(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = mpx(capsys, "info", str(tiny_checkpoint))
    assert code == 0
    assert "LSTM hidden 32, layers 1, pitch embedding 8; bins: step 48" in out and "licence" in out


def test_the_wheel_carries_the_seed_and_the_repository_its_licence() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.mid" in project["tool"]["setuptools"]["package-data"]["mpx.artifacts"]  # seed.mid
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["project"]["license"] == "MIT" and project["project"]["license-files"] == ["LICENSE"]
    assert "seed-continuation.mid" in (ROOT / ".gitignore").read_text().split()
    assert "plot" in project["project"]["optional-dependencies"]


# == 3 (continued). damage that still loads =====================================================
def test_a_damaged_model_that_still_runs_is_refused_by_its_notes(tiny_artifacts: Path, seed: Path,
                                                                 tmp_path: Path) -> None:
    # bytes flipped in a .pt's decode constants load fine (torch.jit.load checks no CRC) and made
    # steps of hours, written as a MIDI file no reader takes back
    import torch
    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    module = torch.jit.load(str(tiny_artifacts / "music_producter.pt"), _extra_files=extra)  # our own file
    with torch.no_grad():
        module.scale.mul_(1000.0)
    damaged = tmp_path / "damaged.pt"
    torch.jit.save(module, str(damaged), _extra_files=extra)
    with pytest.raises(ArtifactError, match="made a note outside its own spec .*the file is damaged"):
        generate_files(load(damaged), seed, tmp_path / "out.mid", GenerationOptions(notes=16, seed=0))
    assert not (tmp_path / "out.mid").exists()


def test_damaged_archive_and_metadata_bytes_are_one_line(tiny_artifacts: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pt = bytearray((tiny_artifacts / "music_producter.pt").read_bytes())
    central = pt.find(b"PK\x01\x02")
    pt[central + 6] = 0xFF  # "version needed to extract": zipfile raises NotImplementedError
    (tmp_path / "version.pt").write_bytes(bytes(pt))
    onnx_bytes = bytearray((tiny_artifacts / "music_producter.onnx").read_bytes())
    at = onnx_bytes.find(b'"hidden"')
    onnx_bytes[at + 2] = 0xD1  # invalid UTF-8 inside the spec: onnxruntime's metadata map fails
    (tmp_path / "utf8.onnx").write_bytes(bytes(onnx_bytes))
    for path in (tmp_path / "version.pt", tmp_path / "utf8.onnx"):
        code, _, err = mpx(capsys, "info", str(path))
        one_line_error(code, err, str(path))
    code, _, err = mpx(capsys, "run", str(ROOT / "artifacts" / "seed.mid"), "--model", str(tmp_path / "utf8.onnx"),
                       "--out", str(tmp_path / "x.mid"))
    one_line_error(code, err, "metadata is damaged")


def test_a_midi_too_long_to_read_back_is_written_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mpx.runtime.midi import write_midi
    notes = np.array([[60, 3000.0, 1.0, 80]] * 3, np.float32)  # 150 minutes
    write_midi(notes, tmp_path / "long.mid")
    assert "write a .csv for runs this long" in caplog.text


# == measured: the audit script runs and finds nothing ==========================================
@pytest.mark.slow
def test_reliability_audit_smoke(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reliability.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "| **all** |" in done.stdout and len(report["cases"]) > 100
    assert {case[2] for case in report["cases"]} <= {"ok", "clean error"} and report["findings"] == []
