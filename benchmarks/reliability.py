"""Reliability audit: mpx run as a hostile user would, counted.

    python benchmarks/reliability.py                     # a few minutes on 2 cores
    python benchmarks/reliability.py --quick             # the smoke test's size
    python benchmarks/reliability.py --json benchmarks/results/reliability.json

Everything it needs it makes itself, seeded, from tests/data: a tiny model (trained and
exported here, in every format: ONNX, TorchScript, torch.export, AOTInductor), a fuzz corpus
(mutated and hand-made MIDI files), damaged and forged models and checkpoints, payloads (pickles,
Python in the strings torch evaluates, native code). Then it runs them through the commands a
user runs and counts:

    clean error   non-zero exit, stderr one line ("mpx: error: ..." / "mpx: interrupted")
    traceback     an exception escaped (or the process crashed)          goal 0
    hang          no answer within the case's time limit                 goal 0
    wrong         exit 0 with a result that is not what was asked for,
                  or a bad value accepted                                goal 0
    code ran      a payload's code ran (a marker file appeared)          goal 0
    clobbered     an input, or a file that existed, changed without --force   goal 0
    litter        a temporary or partial file left behind, beside the output or in
                  the temp folder (TMPDIR points to a folder of the audit's own)  goal 0

A damaged model may also run (a flipped byte in a zip header field nothing reads): it must then
make the intact model's notes for the same seed, or it counts as wrong.

Most cases run `mpx.cli.main` inside a worker process (the console script's own entry point,
without a Python start-up per case); the worker is killed and restarted when a case hangs.
Faults that need a real process (Ctrl-C, kill -9, concurrent trainings) start `python -m mpx`.
A full disk is a 16 kB tmpfs when run as root, otherwise simulated (writes under the folder fail
with ENOSPC); read-only is a read-only tmpfs as root, otherwise a 0o555 folder.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pickle
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT / "tests"))
import damage  # noqa: E402 - the tests' torch-free tools for damaging model files
CATEGORIES = ("ok", "clean error", "traceback", "hang", "wrong", "not one line")


# == the worker: runs `mpx ARGS` in-process, one case per JSON line ===========================
def serve() -> None:
    """Read {"argv", "cwd", "fault"} lines, answer {"code", "out", "err", "exception"} lines.
    C-level output (onnxruntime, torch) goes to /dev/null so it cannot corrupt the protocol."""
    import logging
    protocol = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    from mpx.cli import main
    for line in sys.stdin:
        case = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        answer: dict[str, object] = {"code": None, "exception": None}
        logging.getLogger().handlers.clear()  # main() configures logging onto this case's stderr
        os.chdir(case["cwd"])
        sys.argv = ["mpx", *case["argv"]]
        native = tempfile.TemporaryFile()  # what libraries write to fd 2 (torch's own log lines)
        os.dup2(native.fileno(), 2)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _fault(case.get("fault")):
            try:
                main()
                answer["code"] = 0
            except SystemExit as exc:
                answer["code"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - what a user would see as a traceback
                answer["exception"] = traceback.format_exc(limit=-3)
        os.dup2(null, 2)
        native.seek(0)
        below = native.read().decode("utf-8", "replace")
        native.close()
        # whole lines only: the classifier reads every line of stderr, the libraries' first
        answer.update(out="\n".join(out.getvalue().splitlines()[-40:]),
                      err="\n".join((below + err.getvalue()).splitlines()[-200:]))
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


@contextlib.contextmanager
def _fault(fault: dict | None):  # type: ignore[no-untyped-def]
    """Simulated faults for a worker case: writes under a folder fail with ENOSPC."""
    if not fault:
        yield
        return
    import builtins
    import errno
    folder = str(fault["enospc"])
    real_open = builtins.open

    class Full:
        """A file whose writes fail as on a full disk; everything else is the real file's."""

        def __init__(self, inner):  # type: ignore[no-untyped-def]
            self.inner = inner

        def write(self, data):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.inner, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.inner.close()

    def full_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and str(file).startswith(folder) and any(m in mode for m in "wax+"):
            return Full(handle)
        return handle

    builtins.open = full_open
    io.open = full_open
    try:
        yield
    finally:
        builtins.open = real_open
        io.open = real_open


class Worker:
    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def run(self, argv: list[str], cwd: Path, timeout: float, fault: dict | None = None) -> dict | None:
        """The answer, or None for a hang (the worker is then killed and restarted)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process and self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "fault": fault}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return None
        line = self.process.stdout.readline()
        if not line:  # the process died: a crash, not a clean error
            code = self.process.wait()
            self.process = None
            return {"code": code, "out": "", "err": "", "exception": f"worker crashed (exit {code})"}
        return json.loads(line)

    def stop(self) -> None:
        if self.process:
            self.process.kill()
            self.process.wait()
            self.process = None


# == cases ===================================================================================
@dataclasses.dataclass
class Case:
    group: str
    name: str
    argv: list[str] = dataclasses.field(default_factory=list)
    expect: str = "any"                 # any | fail | ok
    check: Callable[[], str | None] | None = None   # on success: a problem, or None
    protect: list[Path] = dataclasses.field(default_factory=list)  # must not change
    watch: Path | None = None           # folder that must gain nothing on failure
    timeout: float = 60.0
    fault: dict | None = None
    runner: Callable[[], dict | None] | None = None  # a case that needs real processes


@dataclasses.dataclass
class Result:
    group: str
    name: str
    category: str
    clobbered: bool
    litter: list[str]
    detail: str = ""
    seconds: float = 0.0
    ran: bool = False       # a payload's code ran


MARKER: Path | None = None   # the file a payload creates when its code runs (set by main)
TEMP: Path | None = None     # the temp folder every mpx process of the audit uses (TMPDIR)


def sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir" if path.is_dir() else None
    except OSError:
        return None


def listing(folder: Path | None) -> set[str]:
    if folder is None or not folder.is_dir():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def is_one_line_error(answer: dict) -> bool:
    lines = [l for l in answer["err"].splitlines() if l.strip()]
    return (bool(lines) and all(l.startswith("mpx: ") for l in lines)
            and (lines[-1].startswith("mpx: error") or lines[-1] == "mpx: interrupted"
                 or lines[-1].startswith("mpx: interrupted "))  # a training says where it saved
            and "Traceback" not in answer["err"])


def run_case(case: Case, worker: Worker) -> Result:
    before = {p: sha(p) for p in case.protect}
    seen = listing(case.watch)
    temp_before = listing(TEMP)
    started = time.monotonic()
    answer = case.runner() if case.runner else worker.run(case.argv, case.watch or ROOT, case.timeout, case.fault)
    seconds = time.monotonic() - started
    if answer is None:
        category, detail = "hang", f"no answer in {case.timeout:g} s"
    elif answer.get("wrong"):  # a runner's own finding (a mixed set, a lock that did not hold)
        category, detail = "wrong", answer["wrong"]
    elif answer.get("exception"):
        category, detail = "traceback", answer["exception"].strip().splitlines()[-1][:200]
    elif answer["code"] == 0:
        problem = case.check() if case.check else None
        if case.expect == "fail":
            problem = problem or "accepted: " + answer["out"].strip()[:120]
        category, detail = ("wrong", problem) if problem else ("ok", "")
    elif is_one_line_error(answer):
        category = "clean error"
        detail = answer["err"].strip().splitlines()[-1][:200]
        if case.expect == "ok":
            category, detail = "wrong", "refused: " + detail
    else:
        category, detail = "not one line", answer["err"].strip()[-300:]
    clobbered = any(sha(p) != h for p, h in before.items())
    new = listing(case.watch) - seen
    litter = sorted(n for n in new if ".mpx-" in n or n.endswith(".tmp")) if case.watch else []
    if answer is not None and answer.get("code") not in (0, None) and case.watch:
        litter = sorted(set(litter) | {n for n in new if not n.startswith("cache")})
    if answer is not None and answer.get("litter"):  # a runner's own count (its folder keeps a saved state)
        litter = sorted(set(litter) | set(answer["litter"]))
    # in the temp folder: anything new but torch's compile cache, which it keeps on purpose
    litter += sorted(f"$TMPDIR/{n}" for n in listing(TEMP) - temp_before
                     if "/" not in n and not n.startswith("torchinductor_"))
    ran = MARKER is not None and MARKER.exists()
    if ran:
        MARKER.unlink()
        category, detail = "wrong", "a payload's code ran"
    return Result(case.group, case.name, category, clobbered, litter, detail, round(seconds, 2), ran)


# == the fuzz corpus =========================================================================
def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack(">I", len(body)) + body


def _notes(count: int = 30, delta: bytes = b"\x60") -> bytes:
    return b"".join(b"\x00\x90" + bytes([40 + i % 60, 64]) + delta + b"\x80" + bytes([40 + i % 60, 0])
                    for i in range(count))


def made_midi(*events: bytes, division: int = 480, fmt: int = 0, notes: bytes | None = None) -> bytes:
    track = b"".join(events) + (_notes() if notes is None else notes) + b"\x00\xff\x2f\x00"
    return _chunk(b"MThd", struct.pack(">HHH", fmt, 1, division)) + _chunk(b"MTrk", track)


HANDMADE = {
    "bad-key-signature.mid": made_midi(b"\x00\xff\x59\x02\x7f\x05"),
    "key-signature-short.mid": made_midi(b"\x00\xff\x59\x01\x00"),
    "tempo-zero.mid": made_midi(b"\x00\xff\x51\x03\x00\x00\x00"),
    "tempo-short.mid": made_midi(b"\x00\xff\x51\x01\x07"),
    "time-signature-zero.mid": made_midi(b"\x00\xff\x58\x04\x00\x00\x00\x00"),
    "division-zero.mid": made_midi(division=0),
    "division-smpte.mid": made_midi(division=0xE728),
    "huge-delta.mid": made_midi(notes=_notes(3, b"\x8f\xff\xff\x7f")),
    "format-2.mid": made_midi(fmt=2),
    "format-9.mid": made_midi(fmt=9),
    "no-notes.mid": made_midi(notes=b""),
    "one-note.mid": made_midi(notes=_notes(1)),
    "only-note-offs.mid": made_midi(notes=b"\x00\x80\x3c\x00" * 10),
    "drums-only.mid": made_midi(notes=b"".join(b"\x00\x99" + bytes([36 + i, 90]) + b"\x30\x89" + bytes([36 + i, 0])
                                               for i in range(20))),
    "sysex-unterminated.mid": made_midi(b"\x00\xf0\x05\x01\x02"),
    "running-status-first.mid": made_midi(b"\x00\x3c\x40"),
    "meta-length-huge.mid": made_midi(b"\x00\xff\x01\x8f\xff\xff\x7fabc"),
    "text-not-utf8.mid": made_midi(b"\x00\xff\x03\x04\xff\xfe\xfd\xfc"),
    "not-midi.mid": b"RIFF\x00\x00\x00\x00WAVEfmt ",
    "header-only.mid": _chunk(b"MThd", struct.pack(">HHH", 0, 1, 480)),
    "track-count-lies.mid": _chunk(b"MThd", struct.pack(">HHH", 1, 9, 480)) + _chunk(b"MTrk", _notes() + b"\x00\xff\x2f\x00"),
    "empty.mid": b"",
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    # half the files get a light touch (most still parse: their notes must come out right),
    # half a heavy one (most are refused: each refusal must be one clean line)
    for _ in range(rng.randint(1, 2) if rng.random() < 0.5 else rng.randint(3, 8)):
        if not out:
            break
        i = rng.randrange(len(out))
        kind = rng.choice(["flip", "set", "insert", "delete", "truncate", "length", "delta"])
        if kind == "flip":
            out[i] ^= 1 << rng.randrange(8)
        elif kind == "set":
            out[i] = rng.randrange(256)
        elif kind == "insert":
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif kind == "delete":
            del out[i:i + rng.randint(1, 16)]
        elif kind == "truncate":
            del out[max(i, 14):]
        elif kind == "length":
            at = out.find(b"MTrk", i) if out.find(b"MTrk", i) >= 0 else out.find(b"MTrk")
            if at >= 0:
                out[at + 4:at + 8] = rng.randrange(2**32).to_bytes(4, "big")
        else:  # a long delta time in the middle of a track
            out[i:i] = bytes([0x80 | rng.randrange(128), 0x80 | rng.randrange(128), rng.randrange(128)])
    return bytes(out)


def fuzz_corpus(folder: Path, count: int, rng: random.Random) -> list[Path]:
    folder.mkdir(parents=True)
    good = sorted((DATA / "midi").glob("*.mid"))
    paths = []
    for name, data in HANDMADE.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    for bad in sorted((DATA / "bad-midi").rglob("*.mid")):
        shutil.copy(bad, folder / f"bad-{bad.name}")
        paths.append(folder / f"bad-{bad.name}")
    for i in range(count):
        source = rng.choice(good)
        path = folder / f"fuzz-{i:04d}.mid"
        path.write_bytes(mutate(source.read_bytes(), rng))
        paths.append(path)
    return paths


def big_midi(path: Path, notes: int) -> Path:
    """A long performance: `notes` notes, as a MIDI file of a few MB."""
    import numpy as np
    from mpx.runtime.midi import write_midi
    rng = np.random.default_rng(0)
    # steps of 20 ms on average: 50 minutes, within what pretty_midi reads back (1e7 ticks)
    values = np.stack([rng.integers(21, 109, notes), rng.exponential(0.02, notes), rng.exponential(0.3, notes),
                       rng.integers(20, 120, notes)], axis=1).astype(np.float32)
    return write_midi(values, path)


# == models ==================================================================================
def tiny_model(work: Path) -> dict[str, Path]:
    """A hidden-16 checkpoint trained for one epoch on tests/data/midi, exported in every
    format (the compiled ones into a folder of their own: the kill -9 case copies the other)."""
    from mpx.export.api import export_artifacts
    from mpx.export.options import ExportOptions
    from mpx.runtime.config import ModelConfig
    from mpx.train.cache import NoteCache
    from mpx.train.corpus import load_corpus
    from mpx.train.loop import train
    from mpx.train.options import TrainOptions
    run = work / "model"
    corpus = load_corpus([DATA / "midi"], cache=NoteCache(work / "cache"), workers=1)
    model = ModelConfig(hidden=16, embedding=4, step_bins=24, duration_bins=24, velocity_bins=8)
    train(corpus, run, TrainOptions(model=model, epochs=1, batch_size=8, seq_len=64, primer_len=25, seed=0))
    export_artifacts(run / "best.safetensors", run, ExportOptions(), echo=lambda _: None)
    for fmt in ("pt2", "aoti"):  # AOTInductor compiles for a minute or two
        export_artifacts(run / "best.safetensors", work / "compiled", ExportOptions(format=fmt), echo=lambda _: None)
    return {"checkpoint": run / "best.safetensors", "last": run / "last.safetensors",
            "onnx": run / "music_producter.onnx", "pt": run / "music_producter.pt",
            "pt2": work / "compiled" / "music_producter.pt2", "aoti": work / "compiled" / "music_producter.aoti.pt2"}


def _edit_json(text: str, change: Callable[[dict], None]) -> str:
    spec = json.loads(text)
    change(spec)
    return json.dumps(spec)


SPEC_DAMAGE: dict[str, Callable[[str], str]] = {
    "spec-not-json": lambda t: t[: len(t) // 2],
    "spec-not-object": lambda t: "[1, 2]",
    "config-wrong-type": lambda t: _edit_json(t, lambda s: s.update(config="hidden=16")),
    "config-unknown-key": lambda t: _edit_json(t, lambda s: s["config"].update(heads=3)),
    "config-missing-key": lambda t: _edit_json(t, lambda s: s["config"].pop("layers")),
    "config-hidden-128": lambda t: _edit_json(t, lambda s: s["config"].update(hidden=128)),
    "config-layers-3": lambda t: _edit_json(t, lambda s: s["config"].update(layers=3)),
    "config-hidden-text": lambda t: _edit_json(t, lambda s: s["config"].update(hidden="16")),
    "spec-version-0": lambda t: _edit_json(t, lambda s: s.update(spec_version=0)),
    "spec-version-negative": lambda t: _edit_json(t, lambda s: s.update(spec_version=-1)),
    "spec-version-1": lambda t: _edit_json(t, lambda s: s.update(spec_version=1)),
    "spec-version-99": lambda t: _edit_json(t, lambda s: s.update(spec_version=99)),
    "seq-len-zero": lambda t: _edit_json(t, lambda s: s.update(seq_len=0)),
    "sampling-top-p-2": lambda t: _edit_json(t, lambda s: s["sampling"].update(top_p=[2, 2, 2, 2])),
    "inputs-renamed": lambda t: _edit_json(t, lambda s: s.update(inputs=["x"])),
    "licence-number": lambda t: _edit_json(t, lambda s: s.update(licence=4)),
    # valid specs that no longer describe the weights: every note would be decoded to other values
    "bins-velocity-minus-1": lambda t: _edit_json(t, lambda s: s["config"].update(velocity_bins=s["config"]["velocity_bins"] - 1)),
    "range-step-max-x2": lambda t: _edit_json(t, lambda s: s["config"].update(step_max=s["config"]["step_max"] * 2)),
    "sampling-top-p-half": lambda t: _edit_json(t, lambda s: s["sampling"].update(top_p=[0.5] * 4)),
    # past the schema's limits
    "spec-nested-100000": lambda t: "[" * 100_000,
    "spec-2-mb": lambda t: _edit_json(t, lambda s: s.update(data={"x": "y" * (2 << 20)})),
}
# the spec edited in a file written before mpx recorded checksums: its sizes checked against the graph
UNRECORDED_DAMAGE = {"unrecorded-config-hidden-x8": lambda t: _edit_json(t, lambda s: s["config"].update(hidden=s["config"]["hidden"] * 8)),
                     "unrecorded-config-layers-2": lambda t: _edit_json(t, lambda s: s["config"].update(layers=2))}
KINDS = {"onnx": ".onnx", "pt": ".pt", "checkpoint": ".safetensors", "pt2": ".pt2", "aoti": ".aoti.pt2"}


def damaged_models(models: dict[str, Path], folder: Path, rng: random.Random) -> dict[str, Path]:
    """name -> a damaged model file of every format: specs edited (the file's checksum kept, as
    an edit keeps it; and in files without one), bytes truncated or flipped, foreign files. Every
    one must be refused in one line, or (a flipped byte nothing reads) make the intact notes."""
    import torch
    from safetensors.torch import save_file
    folder.mkdir(parents=True)
    out: dict[str, Path] = {}
    for kind, suffix in KINDS.items():
        for name, change in SPEC_DAMAGE.items():
            out[f"{name}{suffix}"] = damage.edit_spec_text(models[kind], folder / f"{name}{suffix}", change)
        old = damage.unrecorded(models[kind], folder / f"unrecorded{suffix}")
        for name, change in UNRECORDED_DAMAGE.items():
            out[f"{name}{suffix}"] = damage.edit_spec_text(old, folder / f"{name}{suffix}", change)
        data = models[kind].read_bytes()
        for cut in (0, 8, 100, len(data) // 3, len(data) - 10):
            out[f"truncated-{cut}{suffix}"] = folder / f"truncated-{kind}-{cut}{suffix}"
            out[f"truncated-{cut}{suffix}"].write_bytes(data[:cut])
        for i in range(4):
            flipped = bytearray(data)
            for _ in range(8):
                flipped[rng.randrange(len(flipped))] ^= 0xFF
            out[f"flipped-{i}{suffix}"] = folder / f"flipped-{kind}-{i}{suffix}"
            out[f"flipped-{i}{suffix}"].write_bytes(bytes(flipped))
    out["text.onnx"] = folder / "text.onnx"
    out["text.onnx"].write_text("not a model")
    out["zip.pt"] = folder / "zip.pt"
    with zipfile.ZipFile(out["zip.pt"], "w") as z:
        z.writestr("archive/readme.txt", "a zip, not TorchScript")
    out["folder.onnx"] = folder / "folder.onnx"
    out["folder.onnx"].mkdir()
    out["foreign.safetensors"] = folder / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(out["foreign.safetensors"]))
    out["unknown.tflite"] = folder / "unknown.tflite"
    out["unknown.tflite"].write_bytes(b"TFL3")
    return out


def forged_formats(models: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Files that are another format, or no format, under a model suffix; archives torch would
    not have written."""
    folder.mkdir(parents=True)
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        out[name] = folder / name
        out[name].write_bytes(data)

    put("text.pt2", b"not an archive")
    put("text.aoti.pt2", b"not an archive")
    put("empty.pt2", b"")
    put("zip-header-only.aoti.pt2", b"PK\x03\x04 broken zip")
    for kind, other in (("onnx", "pt2"), ("pt", "pt2"), ("checkpoint", "pt2"), ("aoti", "pt2"), ("pt2", "aoti"),
                        ("onnx", "aoti"), ("pt", "aoti"), ("pt2", "pt"), ("aoti", "pt"), ("pt2", "onnx"),
                        ("aoti", "onnx"), ("pt2", "checkpoint")):
        put(f"{kind}-as{KINDS[other]}", models[kind].read_bytes())
    many = folder / "many-members.pt2"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(20_000):
            z.writestr(f"archive/extra/{i}", b"")
    out["many-members.pt2"] = many
    out["two-folders.pt2"] = damage.rewrite_zip(models["pt2"], folder / "two-folders.pt2", {})
    with zipfile.ZipFile(out["two-folders.pt2"], "a") as z:
        z.writestr("other/models/model.json", "{}")
    return out


class Payload:
    """A pickle that would create MARKER if anything ever unpickled it with the real classes."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


EVIL_LIBRARY = """
#include <stdio.h>
__attribute__((constructor)) static void ran(void) { FILE *f = fopen("%s", "w"); if (f) fclose(f); }
"""


def payloads(models: dict[str, Path], folder: Path, marker: Path) -> dict[str, Path]:
    """Files of every model suffix that carry code: raw pickles, torch.save archives, a
    TorchScript archive whose data.pkl is the payload; torch.export archives (written by torch,
    their checksum taken out) with a pickle where torch unpickles (a weight marked use_pickle,
    the sample inputs, an opaque constant, a legacy weights file), Python where torch evaluates
    strings (a symbolic size, the guards), a graph node calling a loader, an AOTInductor model
    inside; an AOTInductor package whose library is swapped for one whose constructor writes
    the marker (with its checksum kept: refused; `info` never loads it either way)."""
    import torch
    folder.mkdir(parents=True)
    blob = pickle.dumps(Payload(marker))
    out: dict[str, Path] = {}
    for suffix in (".pt", ".onnx", ".safetensors", ".pt2", ".aoti.pt2"):
        out[f"raw-pickle{suffix}"] = folder / f"raw-pickle{suffix}"
        out[f"raw-pickle{suffix}"].write_bytes(blob)
        out[f"torch-save{suffix}"] = folder / f"torch-save{suffix}"
        torch.save({"model": Payload(marker)}, str(out[f"torch-save{suffix}"]))
    evil = folder / "evil-data-pkl.pt"
    with zipfile.ZipFile(models["pt"]) as good, zipfile.ZipFile(evil, "w") as bad:
        for item in good.infolist():
            bad.writestr(item, blob if item.filename.endswith("/data.pkl") else good.read(item))
    out["evil-data-pkl.pt"] = evil

    base = damage.unrecorded(models["pt2"], folder / "base.pt2")
    pickled, samples = io.BytesIO(), io.BytesIO()
    torch.save(Payload(marker), pickled)
    torch.save(((Payload(marker),), {}), samples)
    with zipfile.ZipFile(base) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    victim = next(iter(config["config"]))
    victim_file = config["config"][victim]["path_name"]
    config["config"][victim]["use_pickle"] = True
    with zipfile.ZipFile(models["aoti"]) as package:
        native = {n.split("/", 1)[1]: package.read(n) for n in package.namelist() if "/aotinductor/" in n}
    code = f"__import__('os').system('touch {marker}')"

    def graph(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
        def edit(data: bytes) -> bytes:
            model = json.loads(data)
            change(model)
            return json.dumps(model).encode()
        return edit

    def sympy(model: dict) -> None:
        for value in model["graph_module"]["graph"]["tensor_values"].values():
            for size in value.get("sizes", []):
                if "as_expr" in size:
                    size["as_expr"]["expr_str"] = f"Integer(1) if {code} else Integer(1)"
                    return

    def node_target(target: str) -> Callable[[dict], None]:
        return lambda model: model["graph_module"]["graph"]["nodes"][0].update(target=target)

    pt2 = {
        "pt2-use-pickle-weight": ({"model_weights_config.json": lambda _: json.dumps(config).encode(),
                                   f"data/weights/{victim_file}": lambda _: pickled.getvalue()}, {}),
        "pt2-sample-inputs": ({"sample_inputs/model.pt": lambda _: samples.getvalue()}, {}),
        "pt2-opaque-constant": ({}, {"data/constants/opaque_obj_0": blob}),
        "pt2-legacy-weights": ({}, {"data/weights/model.pt": pickled.getvalue()}),
        "pt2-sympy-size": ({"models/model.json": graph(sympy)}, {}),
        "pt2-guards-code": ({"models/model.json": graph(lambda m: m["guards_code"].append(f"{code} == 0"))}, {}),
        "pt2-node-load-inline": ({"models/model.json": graph(node_target("torch.utils.cpp_extension.load_inline"))}, {}),
        "pt2-node-from-file": ({"models/model.json": graph(node_target("torch.ops.aten.from_file.default"))}, {}),
        "pt2-native-code": ({}, native),
    }
    for name, (changes, add) in pt2.items():
        out[f"{name}.pt2"] = damage.rewrite_zip(base, folder / f"{name}.pt2", changes, add=add)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:
        source = folder / "evil.c"
        source.write_text(EVIL_LIBRARY % marker)
        library = folder / "evil.so"
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        swapped = {".wrapper.so": lambda _: library.read_bytes()}
        out["aoti-evil-library-checksum-kept.aoti.pt2"] = damage.rewrite_zip(
            models["aoti"], folder / "aoti-evil-library-checksum-kept.aoti.pt2", swapped)
        out["aoti-evil-library-info-only.aoti.pt2"] = damage.rewrite_zip(
            damage.unrecorded(models["aoti"], folder / "base.aoti.pt2"), folder / "aoti-evil-library-info-only.aoti.pt2",
            swapped)
    return out


# == building the case list ==================================================================
def notes_count(path: Path) -> int:
    from mpx.runtime.notes_csv import read_any
    return len(read_any(path))


def expect_notes(paths: list[Path], count: int) -> Callable[[], str | None]:
    def check() -> str | None:
        for path in paths:
            try:
                found = notes_count(path)
            except Exception as exc:  # noqa: BLE001 - an unreadable output is the finding
                return f"{path.name} unreadable: {exc}"
            if found != count:
                return f"{path.name} has {found} notes, asked for {count}"
        return None
    return check


def expect_same_notes(source: Path, target: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        import numpy as np
        from mpx.runtime.notes_csv import read_any
        try:
            a, b = read_any(source), read_any(target)
        except Exception as exc:  # noqa: BLE001
            return f"round trip unreadable: {exc}"
        if a.shape != b.shape or not np.allclose(a, b, atol=2e-3):
            return f"{target.name} differs from {source.name}"
        return None
    return check


def expect_png(path: Path) -> Callable[[], str | None]:
    return lambda: None if path.is_file() and path.read_bytes()[:4] == b"\x89PNG" else f"{path.name} is no PNG"


def midi_cases(corpus: list[Path], models: dict[str, Path], work: Path, plot_every: int) -> list[Case]:
    cases = []
    for i, path in enumerate(corpus):
        out = work / "out" / path.stem
        out.mkdir(parents=True)
        cases.append(Case("bad/fuzzed MIDI", f"run {path.name}",
                          ["run", str(path), "--model", str(models["onnx"]), "--notes", "16", "--seed", "0",
                           "--out", str(out / "run.mid")], check=expect_notes([out / "run.mid"], 16),
                          protect=[path], watch=out))
        cases.append(Case("bad/fuzzed MIDI", f"notes {path.name}",
                          ["notes", str(path), "--out", str(out / "notes.csv")],
                          check=expect_same_notes(path, out / "notes.csv"), protect=[path], watch=out))
        if i % plot_every == 0 or path.name.startswith("big-"):
            cases.append(Case("bad/fuzzed MIDI", f"plot {path.name}",
                              ["plot", str(path), "--out", str(out / "roll.png")], check=expect_png(out / "roll.png"),
                              protect=[path], watch=out))
    return cases


def eval_cases(corpus: list[Path], models: dict[str, Path], work: Path, groups: int) -> list[Case]:
    cases = []
    chunks = [corpus[i::groups] for i in range(groups)]
    for g, chunk in enumerate(chunks):
        folder = work / "eval" / f"group-{g}"
        folder.mkdir(parents=True)
        for path in chunk:
            shutil.copy(path, folder / path.name)
        model = models["onnx"] if g % 2 else models["checkpoint"]
        cases.append(Case("bad/fuzzed MIDI", f"eval group {g} ({len(chunk)} files)",
                          ["eval", str(model), str(folder), "--split", "all", "--json"], timeout=120,
                          protect=[folder / p.name for p in chunk]))
    return cases


def train_cases(corpus: list[Path], work: Path, trainings: int) -> list[Case]:
    cases = []
    for t in range(trainings):
        folder = work / "train" / f"data-{t}"
        folder.mkdir(parents=True)
        for path in list(corpus[t::trainings]) + sorted((DATA / "midi").glob("*.mid")):
            shutil.copy(path, folder / path.name)
        out = work / "train" / f"run-{t}"
        cases.append(Case("bad/fuzzed MIDI", f"train on {len(list(folder.iterdir()))} files incl. bad",
                          ["train", str(folder), "--out", str(out), "--epochs", "1", "--hidden", "8",
                           "--embedding", "4", "--batch-size", "8", "--workers", "2",
                           "--cache-dir", str(work / "train-cache")],
                          expect="ok", check=lambda out=out: None if (out / "best.safetensors").is_file() else "no checkpoint",
                          timeout=300))
    return cases


def model_cases(damaged: dict[str, Path], forged: dict[str, Path], code: dict[str, Path],
                models: dict[str, Path], work: Path) -> list[Case]:
    """info and run (and export, for a checkpoint) of every damaged, forged and payload file.
    The intact models run first: a damaged file that runs must make their notes."""
    seed = DATA / "seeds" / "bach_prelude_bwv873.mid"
    cases = []
    reference = {suffix: work / "model-out" / f"intact-{kind}" / "x.mid" for kind, suffix in KINDS.items()}

    def same_notes(out: Path, suffix: str) -> Callable[[], str | None]:
        def check() -> str | None:
            import numpy as np
            from mpx.runtime.notes_csv import read_any
            try:
                made, intact = read_any(out), read_any(reference[suffix])
            except Exception as exc:  # noqa: BLE001 - an unreadable output is the finding
                return f"unreadable: {exc}"
            return None if np.array_equal(made, intact) else "ran, and made other notes than the intact model"
        return check

    intact = {f"intact-{kind}{suffix}": models[kind] for kind, suffix in KINDS.items()}
    for name, path in {**intact, **damaged, **forged, **code}.items():
        group = ("damaged models" if name in damaged or name in intact else
                 "forged formats" if name in forged else "payloads")
        suffix = next(s for s in (".aoti.pt2", ".pt2", ".onnx", ".pt", ".safetensors", ".tflite", "") if name.endswith(s))
        # refused, unless intact, or a flipped byte nothing reads (then: the intact notes)
        expect = "ok" if name in intact else "any" if name.startswith("flipped") else "fail"
        out = work / "model-out" / name.removesuffix(suffix).replace(".", "_") if name in intact else \
            work / "model-out" / name.replace(".", "_")
        out.mkdir(parents=True)
        check = same_notes(out / "x.mid", suffix) if name.startswith("flipped") else expect_notes([out / "x.mid"], 8)
        info_expect = ("any" if name.startswith("flipped") or name in intact
                       else "ok" if name.endswith("info-only.aoti.pt2") else expect)  # read as data, never run
        cases.append(Case(group, f"info {name}", ["info", str(path)], expect=info_expect, protect=[path]))
        if name.endswith("info-only.aoti.pt2"):
            continue  # an AOTInductor package without a checksum is a program: running it runs it
        cases.append(Case(group, f"run {name}", ["run", str(seed), "--model", str(path), "--notes", "8", "--seed", "0",
                                                 "--out", str(out / "x.mid")], expect=expect, check=check,
                          protect=[path, seed], watch=out, timeout=120))
        if suffix == ".safetensors" and name not in intact:
            cases.append(Case(group, f"export {name}", ["export", "--checkpoint", str(path), "--out-dir", str(out / "art"),
                                                        "--format", "onnx"], expect=expect, timeout=120,
                              protect=[path], watch=out))
    for backend in ("pt2", "aoti"):
        out = work / "model-out" / f"no-model-{backend}"
        out.mkdir(parents=True)
        cases.append(Case("forged formats", f"run --backend {backend} without --model",
                          ["run", str(seed), "--backend", backend, "--out", str(out / "x.mid")], expect="fail", watch=out))
    return cases


def option_cases(models: dict[str, Path], work: Path) -> list[Case]:
    seed = work / "options" / "seed.mid"
    seed.parent.mkdir(parents=True)
    shutil.copy(DATA / "seeds" / "chopin_etude_op25_4.mid", seed)
    csv_bad = {"pitch-200": "200,0.1,0.2,80", "nan": "60,nan,0.2,80", "inf": "60,0.1,inf,80",
               "negative-step": "60,-1,0.2,80", "fraction-pitch": "60.5,0.1,0.2,80", "velocity-300": "60,0.1,0.2,300",
               "two-fields": "60,0.1", "text": "sixty,0.1,0.2,80", "huge": "60,1e39,0.2,80"}
    for name, row in csv_bad.items():
        (work / "options" / f"{name}.csv").write_text(f"pitch,step,duration,velocity\n60,0,0.5,80\n{row}\n")
    run = ["run", str(seed), "--model", str(models["onnx"])]
    out = str(work / "options" / "out.mid")
    bad_run = {"--notes": ["0", "-1", "1180591620717411303424", "10000001", "x"],
               "--threads": ["0", "-1", "100000", "257"],
               "--num-outputs": ["0", "-2", "5000"],
               "--temperature": ["-1", "nan", "inf", "101", "1,2", "1,2,3,4,5", "a"],
               "--top-p": ["0", "-0.1", "1.01", "nan", "inf", "0.9,0.9"],
               "--seed": ["-1", "18446744073709551616", "x"],
               "--primer-notes": ["0", "-1", "100001", "5000"],
               "--program": ["-1", "128"], "--velocity": ["0", "128", "-5"],
               "--tempo": ["0", "-120", "nan", "inf", "1001"],
               "--mode": ["sliding", ""], "--backend": ["tflite"],
               "--out": [str(work / "options" / "x.wav"), str(work / "options" / "noext"),
                         str(work / "options" / "missing" / "x.mid"), str(work / "options")]}
    cases = []
    for flag, values in bad_run.items():
        for value in values:
            argv = [*run, flag, value] + (["--out", out] if flag != "--out" else [])
            cases.append(Case("bad option values", f"run {flag} {value[-30:]}", argv, expect="fail",
                              protect=[seed], watch=work / "options"))
    train = ["train", str(DATA / "midi"), "--out", str(work / "options" / "run")]
    bad_train = {"--workers": ["0", "-1", "1000"], "--pitch-weight": ["nan", "-1", "inf"],
                 "--step-weight": ["nan"], "--lr": ["0", "-1", "nan", "11"], "--epochs": ["0", "-3"],
                 "--batch-size": ["0"], "--seq-len": ["1", "0"], "--hidden": ["0", "5000"], "--layers": ["0"],
                 "--dropout": ["1", "-0.1", "nan"], "--transpose": ["-1", "99"], "--reset-prob": ["2", "nan"],
                 "--step-max": ["0", "inf"], "--step-bins": ["1", "500"], "--velocity-bins": ["0"],
                 "--max-files": ["0", "-1"], "--device": ["tpu", "cuda:x"], "--primer-len": ["0"],
                 "--seed": ["-1"], "--metadata": [str(work / "options" / "none.csv")]}
    for flag, values in bad_train.items():
        for value in values:
            cases.append(Case("bad option values", f"train {flag} {value[-30:]}", [*train, flag, value],
                              expect="fail", watch=work / "options", timeout=120))
    for flag, value in (("--opset", "99"), ("--opset", "12"), ("--atol", "0"), ("--atol", "nan"), ("--rtol", "-1"),
                        ("--format", "tflite"), ("--quantize", "int4")):
        cases.append(Case("bad option values", f"export {flag} {value}",
                          ["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(work / "options" / "art"),
                           flag, value], expect="fail", watch=work / "options"))
    for value in ("-1", "100000", "x"):
        cases.append(Case("bad option values", f"plot --primer-notes {value}",
                          ["plot", str(seed), "--out", str(work / "options" / "x.png"), "--primer-notes", value],
                          expect="fail", watch=work / "options"))
    cases.append(Case("bad option values", "plot --out x.jpg", ["plot", str(seed), "--out", str(work / "options" / "x.jpg")],
                      expect="fail", watch=work / "options"))
    for value in ("0", "-3", "100000"):
        cases.append(Case("bad option values", f"notes --last {value}",
                          ["notes", str(seed), "--out", str(work / "options" / "x.csv"), "--last", value],
                          expect="fail", watch=work / "options"))
    for name in csv_bad:
        csv = work / "options" / f"{name}.csv"
        for command in (["notes", str(csv), "--out", str(work / "options" / "x.mid")], [
                "run", str(csv), "--model", str(models["onnx"]), "--out", str(work / "options" / "x.mid")]):
            cases.append(Case("bad option values", f"{command[0]} CSV {name}", command, expect="fail",
                              protect=[csv], watch=work / "options"))
    for split in ("dev", ""):
        cases.append(Case("bad option values", f"eval --split {split!r}",
                          ["eval", str(models["onnx"]), str(DATA / "midi"), "--split", split], expect="fail"))
    return cases


def clobber_cases(models: dict[str, Path], work: Path) -> list[Case]:
    folder = work / "clobber"
    folder.mkdir()
    seed = folder / "seed.mid"
    shutil.copy(DATA / "seeds" / "haydn_sonata_48_1.mid", seed)
    existing = folder / "mine.mid"
    existing.write_bytes(b"the user's own work")
    png = folder / "mine.png"
    png.write_bytes(b"a picture")
    run = ["run", str(seed), "--model", str(models["onnx"]), "--notes", "8"]
    cases = [
        Case("clobber", "run --out SEED", [*run, "--out", str(seed)], expect="fail", protect=[seed]),
        Case("clobber", "run --out SEED --force", [*run, "--out", str(seed), "--force"], expect="fail", protect=[seed]),
        Case("clobber", "run --out a link to SEED", [*run, "--out", str(folder / "link.mid"), "--force"],
             expect="fail", protect=[seed]),
        Case("clobber", "run --out EXISTING", [*run, "--out", str(existing)], expect="fail", protect=[existing]),
        Case("clobber", "run --plot EXISTING", [*run, "--out", str(folder / "new.mid"), "--plot", str(png)],
             expect="fail", protect=[png]),
        Case("clobber", "notes --out INPUT", ["notes", str(seed), "--out", str(seed), "--force"], expect="fail",
             protect=[seed]),
        Case("clobber", "notes --out EXISTING", ["notes", str(seed), "--out", str(existing)], expect="fail",
             protect=[existing]),
        Case("clobber", "plot --out EXISTING", ["plot", str(seed), "--out", str(png)], expect="fail", protect=[png]),
        Case("clobber", "export over EXISTING artifacts", ["export", "--checkpoint", str(models["checkpoint"]),
                                                           "--out-dir", str(models["onnx"].parent)],
             expect="fail", protect=[models["onnx"], models["pt"]]),
        Case("clobber", "train --out over an earlier run", ["train", str(DATA / "midi"), "--out", str(models["onnx"].parent)],
             expect="fail", protect=[models["checkpoint"], models["last"]], timeout=120),
        Case("clobber", "train --out FILE", ["train", str(DATA / "midi"), "--out", str(seed)], expect="fail",
             protect=[seed]),
    ]
    os.link(seed, folder / "link.mid")
    return cases


# == faults that need real processes =========================================================
def interactive() -> None:
    """Ctrl-C as on a terminal: a job started in the background by a non-interactive shell (a CI
    runner, `nohup ... &`) inherits SIGINT ignored, and Python then never turns it into
    KeyboardInterrupt; a user's mpx has the default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mpx_process(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mpx", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True,
                            preexec_fn=interactive)


def finish(process: subprocess.Popen[str], timeout: float) -> dict | None:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    code = process.returncode
    crashed = code < 0 and code != -signal.SIGKILL
    return {"code": code, "out": out, "err": err,
            "exception": err.strip()[-300:] if "Traceback" in err or crashed else None}


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _mount(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


def _fault_folder(path: Path, options: str, mounts: list[Path], mode: int = 0o755) -> bool:
    """A small tmpfs at `path` with these mount options when root can mount one (recorded in
    `mounts` for unmounting), else a plain folder with `mode`; True for the real tmpfs."""
    real = _mount(path, options)
    if real:
        mounts.append(path)
    else:
        path.mkdir(exist_ok=True)
        path.chmod(mode)
    return real


def fault_cases(models: dict[str, Path], corpus: list[Path], work: Path, mounts: list[Path]) -> tuple[list[Case], dict[str, str]]:
    folder = work / "faults"
    folder.mkdir()
    seed = DATA / "seeds" / "schumann_kreisleriana_7.mid"
    notes: dict[str, str] = {}
    data = folder / "data"
    data.mkdir()
    for i in range(20):  # distinct contents, so parsing takes a while and nothing is cached
        for f in sorted((DATA / "midi").glob("*.mid")):
            (data / f"{i}-{f.name}").write_bytes(f.read_bytes() + bytes([i]))
    cases: list[Case] = []

    # disk full: a real one (tmpfs) as root, else writes under the folder fail with ENOSPC
    full = folder / "full"
    real = _fault_folder(full, "size=16k", mounts)
    notes["disk full"] = "16 kB tmpfs" if real else "simulated (open(..., 'w') under the folder raises ENOSPC)"
    fault = None if real else {"enospc": str(full)}
    for name, argv in (("run", ["run", str(seed), "--model", str(models["onnx"]), "--notes", "20000", "--out", str(full / "x.mid")]),
                       ("run csv", ["run", str(seed), "--model", str(models["onnx"]), "--notes", "20000", "--out", str(full / "x.csv")]),
                       ("notes", ["notes", str(seed), "--out", str(full / "x.csv")]),
                       ("plot", ["plot", str(seed), "--out", str(full / "x.png")]),
                       ("export", ["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(full)]),
                       ("train", ["train", str(DATA / "midi"), "--out", str(full / "run"), "--epochs", "1", "--hidden", "64",
                                  "--cache-dir", str(folder / "cache")])):
        cases.append(Case("faults", f"disk full: {name}", argv, expect="fail", fault=fault, watch=full, timeout=180))

    # read-only folder
    ro = folder / "ro"
    real_ro = _fault_folder(ro, "ro,size=16k", mounts, mode=0o555)
    notes["read-only"] = "read-only tmpfs" if real_ro else "0o555 folder"
    for name, argv in (("run", ["run", str(seed), "--model", str(models["onnx"]), "--out", str(ro / "x.mid")]),
                       ("notes", ["notes", str(seed), "--out", str(ro / "x.csv")]),
                       ("plot", ["plot", str(seed), "--out", str(ro / "x.png")]),
                       ("export", ["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(ro)]),
                       ("train", ["train", str(data), "--out", str(ro / "run"), "--cache-dir", str(folder / "ro-cache")])):
        cases.append(Case("faults", f"read-only: {name}", argv, expect="fail", watch=ro, timeout=60))

    def ctrl_c_while_parsing() -> dict | None:
        cache = folder / "parse-cache"
        process = mpx_process(["train", str(data), "--out", str(folder / "parse-run"), "--workers", "2",
                               "--cache-dir", str(cache)], folder)
        wait_for(lambda: cache.exists() and any(p.is_file() for p in cache.rglob("*")), 120)  # parsing has begun
        os.killpg(process.pid, signal.SIGINT)
        answer = finish(process, 60)
        if answer and answer["code"] == 130 and answer["err"].strip() != "mpx: interrupted":
            answer["exception"] = f"exit 130 with {answer['err'].strip()[:200]!r}"
        return answer

    cases.append(Case("faults", "Ctrl-C while parsing the corpus", expect="fail", runner=ctrl_c_while_parsing,
                      watch=folder / "parse-run"))

    def ctrl_c_mid_epoch_then_resume() -> dict | None:
        out = folder / "interrupted"
        args = ["train", str(DATA / "midi"), "--out", str(out), "--epochs", "2", "--hidden", "32", "--batch-size", "4",
                "--cache-dir", str(folder / "cache")]
        process = mpx_process(args, folder)
        wait_for(lambda: (out / ".mpx-train.lock").exists(), 120)
        time.sleep(6)  # start-up and parsing done: the first epoch is under way
        os.killpg(process.pid, signal.SIGINT)
        first = finish(process, 120)
        if first is None or first.get("exception"):
            return first
        if first["code"] != 0 and not is_one_line_error(first):
            return {**first, "exception": "interrupted without one line: " + first["err"].strip()[-200:]}
        resumed = finish(mpx_process([*args, "--resume"], folder), 300)
        if resumed and resumed["code"] != 0 and not resumed.get("exception"):
            resumed["exception"] = "resume failed: " + resumed["err"].strip()[-200:]
        return resumed

    cases.append(Case("faults", "Ctrl-C mid-epoch, then --resume", expect="ok", runner=ctrl_c_mid_epoch_then_resume,
                      timeout=400, check=lambda: None if (folder / "interrupted" / "best.safetensors").is_file() else "no best"))

    def kill_export_midway() -> dict | None:
        target = folder / "export"
        shutil.copytree(models["onnx"].parent, target, ignore=shutil.ignore_patterns("*.safetensors", "*.lock"))
        before = {p.name: sha(p) for p in target.iterdir()}
        process = mpx_process(["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(target),
                               "--force", "--quantize", "int8"], folder)
        wait_for(lambda: any(".mpx-" in p.name for p in target.iterdir()), 60)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        after = {p.name: sha(p) for p in target.iterdir() if ".mpx-" not in p.name}
        mixed = {n for n in before if after.get(n) != before[n]}
        if mixed and mixed != set(before):
            return {"code": 0, "out": "", "err": "", "exception": None, "wrong": f"mixed set: {sorted(mixed)} replaced"}
        # the next export into the folder removes what the killed one left
        again = finish(mpx_process(["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(target),
                                    "--force", "--format", "onnx"], folder), 300)
        return again

    cases.append(Case("faults", "kill -9 during export, then export again", expect="ok", runner=kill_export_midway,
                      timeout=400, watch=None,
                      check=lambda: next((f"left {p.name}" for p in (folder / "export").iterdir() if ".mpx-" in p.name), None)))

    def kill_train_midway() -> dict | None:
        out = folder / "killed"
        args = ["train", str(DATA / "midi"), "--out", str(out), "--epochs", "3", "--hidden", "32", "--batch-size", "4",
                "--cache-dir", str(folder / "cache")]
        process = mpx_process(args, folder)
        wait_for(lambda: (out / "last.safetensors").exists(), 300)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return finish(mpx_process([*args, "--resume"], folder), 300)

    cases.append(Case("faults", "kill -9 during train, then --resume", expect="ok", runner=kill_train_midway, timeout=700,
                      check=lambda: next((f"left {p.name}" for p in (folder / "killed").iterdir()
                                          if p.name.endswith(".tmp") or p.name.endswith(".lock")), None)))

    def two_trainings_one_out() -> dict | None:
        out = folder / "shared"
        args = ["train", str(DATA / "midi"), "--out", str(out), "--epochs", "3", "--hidden", "16",
                "--cache-dir", str(folder / "cache")]
        first = mpx_process(args, folder)
        wait_for(lambda: (out / ".mpx-train.lock").exists(), 60)
        second = finish(mpx_process(args, folder), 120)
        done = finish(first, 300)
        if done is None or done["code"] != 0:
            return done
        if second is None or second["code"] == 0:
            return {"code": 0, "out": "", "err": "", "exception": None, "wrong": "second training was not refused"}
        return second  # the refusal, which must be one clean line

    cases.append(Case("faults", "two trainings into one --out", expect="fail", runner=two_trainings_one_out, timeout=500))
    return cases, notes


def race_cases(models: dict[str, Path], work: Path, mounts: list[Path]) -> list[Case]:
    """Processes racing for one output, sets that must land whole, leftovers of kill -9."""
    folder = work / "races"
    folder.mkdir()
    seed = DATA / "seeds" / "bach_prelude_bwv873.mid"
    cases: list[Case] = []

    def parallel_runs() -> dict | None:
        out = folder / "o.mid"
        runs = [mpx_process(["run", str(seed), "--model", str(models["onnx"]), "--out", str(out), "--notes", "3000",
                             "--seed", str(i)], folder) for i in range(5)]
        answers = [finish(p, 300) for p in runs]
        if any(a is None for a in answers):
            return None
        won = [i for i, a in enumerate(answers) if a["code"] == 0]
        if len(won) != 1:
            return {**answers[0], "wrong": f"{len(won)} of 5 runs wrote o.mid without --force"}
        again = finish(mpx_process(["run", str(seed), "--model", str(models["onnx"]), "--out", str(folder / "again.mid"),
                                    "--notes", "3000", "--seed", str(won[0])], folder), 300)
        if again is None or again["code"] != 0 or sha(folder / "again.mid") != sha(out):
            return {**answers[0], "wrong": "o.mid is not the winner's whole output"}
        lost = next(a for i, a in enumerate(answers) if i != won[0])
        answer = lost if all(a.get("exception") is None for a in answers) else next(a for a in answers if a.get("exception"))
        return {**answer, "litter": [p.name for p in folder.iterdir() if ".mpx-" in p.name]}

    cases.append(Case("races", "5 parallel runs into one --out (no --force)", expect="fail", runner=parallel_runs,
                      timeout=400))

    def parallel_exports() -> dict | None:
        out = folder / "export"
        runs = [mpx_process(["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", str(out)], folder)
                for _ in range(2)]
        answers = [finish(p, 600) for p in runs]
        if any(a is None for a in answers):
            return None
        if sorted(a["code"] for a in answers) != [0, 1]:
            return {**answers[0], "wrong": f"exits {[a['code'] for a in answers]}: both exports wrote the folder"}
        return next(a for a in answers if a["code"] == 1)

    cases.append(Case("races", "2 parallel exports into one folder", expect="fail", runner=parallel_exports,
                      timeout=700))

    full = folder / "full"
    real = _fault_folder(full, "size=64k", mounts)
    cases.append(Case("partial sets", "--num-outputs 64 into a full disk",
                      ["run", str(seed), "--model", str(models["onnx"]), "--notes", "500", "--num-outputs", "64",
                       "--out", str(full / "take.mid")], expect="fail", fault=None if real else {"enospc": str(full)},
                      watch=full, timeout=180,
                      check=lambda: "takes left" if any(full.glob("take-*")) else None))

    def killed_train_then_write() -> dict | None:
        out = folder / "killed-train"
        process = mpx_process(["train", str(DATA / "midi"), "--out", str(out), "--epochs", "50", "--hidden", "8",
                               "--embedding", "4", "--cache-dir", str(folder / "cache")], folder)
        wait_for(lambda: (out / ".mpx-train.lock").exists(), 120)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        answer = finish(mpx_process(["notes", str(seed), "--out", str(out / "seed.csv")], folder), 60)
        if answer and (out / ".mpx-train.lock").exists():
            return {**answer, "wrong": "the killed training's lock is still there"}
        return answer

    cases.append(Case("stale leftovers", "kill -9 during train, then a write into its folder", expect="ok",
                      runner=killed_train_then_write, timeout=200))
    return cases


def startup_ctrl_c_cases(models: dict[str, Path], work: Path) -> list[Case]:
    """Ctrl-C at delays counted from mpx's first line (Python's own start-up before it, which
    no program can handle, is measured and left out), for each command."""
    folder = work / "startup-ctrl-c"
    folder.mkdir()
    seed = DATA / "seeds" / "haydn_sonata_48_1.mid"
    commands = {
        "run": ["run", str(seed), "--model", str(models["onnx"]), "--notes", "200000", "--out", "{dir}/o.mid"],
        "export": ["export", "--checkpoint", str(models["checkpoint"]), "--out-dir", "{dir}/export"],
        "eval": ["eval", str(models["onnx"]), str(DATA / "midi"), "--split", "all", "--cache-dir", "{dir}/cache"],
        "train": ["train", str(DATA / "midi"), "--out", "{dir}/run", "--epochs", "1", "--hidden", "8",
                  "--cache-dir", "{dir}/cache"],
        "info": ["info", str(models["onnx"])],
    }
    started = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", "import mpx.start"], check=True)
        started.append(time.monotonic() - began)
    start = max(started) + 0.05
    cases = []
    for name, argv in commands.items():
        for delay in (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.5):
            here = folder / f"{name}-{delay}"
            here.mkdir()

            def interrupt(argv: list[str] = argv, here: Path = here, delay: float = delay) -> dict | None:
                process = mpx_process([a.replace("{dir}", str(here)) for a in argv], here)
                time.sleep(start + delay)
                os.killpg(process.pid, signal.SIGINT)
                answer = finish(process, 120)
                if answer and answer["code"] == 0:
                    return {**answer, "err": "mpx: interrupted", "code": 130}  # finished first: nothing to interrupt
                if answer and answer["code"] != 130:
                    answer["exception"] = answer.get("exception") or f"exit {answer['code']}: {answer['err'].strip()[-200:]!r}"
                if answer:  # an interrupted training keeps its saved state: only temporaries are litter
                    answer["litter"] = [str(p.relative_to(here)) for p in here.rglob("*")
                                        if ".mpx-" in p.name or p.name.endswith(".tmp")]
                return answer

            cases.append(Case("start-up Ctrl-C", f"{name} at {delay:g} s after mpx starts", expect="fail",
                              runner=interrupt, timeout=150))
    return cases


def thread_cases(models: dict[str, Path]) -> list[Case]:
    def shared(path: Path) -> dict | None:
        import numpy as np
        from mpx.runtime import load, read_notes
        generator = load(path, threads=1)
        primer = read_notes(DATA / "seeds" / "beethoven_sonata_28_1.mid")
        alone = {s: generator.generate(primer, 64, seed=s) for s in range(8)}
        together: dict[int, object] = {}
        threads = [threading.Thread(target=lambda s=s: together.__setitem__(s, generator.generate(primer, 64, seed=s)))
                   for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        same = all(s in together and np.array_equal(together[s], alone[s]) for s in range(8))
        return {"code": 0, "out": "", "err": "", "exception": None, "wrong": None if same else "threads gave other notes"}
    return [Case("threads", f"8 threads share one Generator ({kind})", runner=lambda p=models[kind]: shared(p), expect="ok")
            for kind in ("onnx", "pt", "checkpoint")]


# == the run =================================================================================
def execute(cases: list[Case], worker: Worker, verbose: bool) -> list[Result]:
    results = []
    for i, case in enumerate(cases, start=1):
        result = run_case(case, worker)
        results.append(result)
        if verbose or result.category not in ("ok", "clean error") or result.clobbered or result.litter:
            print(f"  [{i}/{len(cases)}] {result.category:<12} {case.group}: {case.name}"
                  + (f"  -- {result.detail}" if result.detail and result.category != "clean error" else "")
                  + ("  CLOBBERED" if result.clobbered else "") + (f"  LITTER {result.litter}" if result.litter else ""),
                  flush=True)
    return results


def table(results: list[Result]) -> str:
    groups = list(dict.fromkeys(r.group for r in results))
    header = ["group", "cases", *CATEGORIES, "code ran", "clobbered", "litter"]
    rows = []
    for group in [*groups, "all"]:
        chosen = [r for r in results if group in ("all", r.group)]
        counts = Counter(r.category for r in chosen)
        rows.append([group if group != "all" else "**all**", str(len(chosen)), *(str(counts[c]) for c in CATEGORIES),
                     str(sum(r.ran for r in chosen)), str(sum(r.clobbered for r in chosen)),
                     str(sum(bool(r.litter) for r in chosen))])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], notes: dict[str, str], args: argparse.Namespace,
               elapsed: float, work: Path) -> None:
    """The table, and every case as [group, name, category, seconds]; details only for findings
    (clean errors are the expected outcome, their messages are in the run's own output)."""
    findings = [{**dataclasses.asdict(r), "detail": r.detail.replace(str(work), "$WORK")}
                for r in results if r.category not in ("ok", "clean error") or r.clobbered or r.litter]
    path.write_text(json.dumps({
        "command": "python benchmarks/reliability.py" + (" --quick" if args.quick else "")
                   + (" --no-faults" if args.no_faults else "") + (f" --groups '{args.groups}'" if args.groups else "")
                   + f" --json {args.json}",
        "seed": args.seed, "seconds": round(elapsed, 1), "python": sys.version.split()[0], "notes": notes,
        "table": table(results), "findings": findings,
        "cases": [[r.group, r.name, r.category, r.seconds] for r in results]}, indent=None)
        .replace('], [', '],\n ['))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the fuzz corpus")
    parser.add_argument("--midi", type=int, default=300, help="fuzzed MIDI files (besides the hand-made ones)")
    parser.add_argument("--plot-every", type=int, default=6, help="plot one fuzzed file in N")
    parser.add_argument("--quick", action="store_true", help="a smoke test: a few cases of every kind")
    parser.add_argument("--no-faults", action="store_true", help="skip the cases that start real processes")
    parser.add_argument("--verbose", action="store_true", help="print every case, not only the findings")
    parser.add_argument("--json", type=Path, help="also write every case's result here")
    parser.add_argument("--groups", help="run only these groups (comma-separated, e.g. 'races,start-up Ctrl-C')")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve()
        return 0
    global MARKER, TEMP
    started = time.monotonic()
    rng = random.Random(args.seed)
    mounts: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="mpx-reliability-") as tmp:
        work = Path(tmp)
        os.environ["MPX_CACHE_DIR"] = str(work / "note-cache")  # the worker inherits it: never ~/.cache
        TEMP = work / "tmp"  # every mpx process's temp folder (this one's own stays where it was)
        TEMP.mkdir()
        os.environ["TMPDIR"] = str(TEMP)
        print("making the tiny model, the fuzz corpus, damaged models and pickle payloads ...", flush=True)
        models = tiny_model(work)
        corpus = fuzz_corpus(work / "corpus", 12 if args.quick else args.midi, rng)
        big = [] if args.quick else [big_midi(work / "big-performance.mid", 150_000)]  # run, notes, plot only
        damaged = damaged_models(models, work / "damaged", rng)
        forged = forged_formats(models, work / "forged")
        marker = work / "PAYLOAD-RAN"
        MARKER = marker
        code = payloads(models, work / "payloads", marker)
        if args.quick:
            damaged = dict(list(damaged.items())[::6])
            forged = dict(list(forged.items())[::3])
        cases = midi_cases(corpus + big, models, work, args.plot_every)
        cases += eval_cases(corpus, models, work, 2 if args.quick else 8)
        cases += train_cases(corpus, work, 1 if args.quick else 2)
        cases += model_cases(damaged, forged, code, models, work)
        options = option_cases(models, work)
        cases += options[::5] if args.quick else options
        cases += clobber_cases(models, work)
        cases += thread_cases(models)
        notes: dict[str, str] = {}
        if not args.no_faults:
            faults, notes = fault_cases(models, corpus, work, mounts)
            cases += faults[:7] if args.quick else faults
            races = race_cases(models, work, mounts) + startup_ctrl_c_cases(models, work)
            cases += races[::4] if args.quick else races
        for case in cases:
            if case.group == "bad/fuzzed MIDI" and "big-performance" in case.name:
                case.timeout = 300
        if args.groups:
            wanted = {g.strip() for g in args.groups.split(",")}
            cases = [c for c in cases if c.group in wanted]
        print(f"running {len(cases)} cases ...", flush=True)
        worker = Worker()
        try:
            results = execute(cases, worker, args.verbose)
        finally:
            worker.stop()
            for mount in mounts:
                subprocess.run(["umount", str(mount)], capture_output=True)
            with contextlib.suppress(OSError):
                (work / "faults" / "ro").chmod(0o755)
        payload_ran = sum(r.ran for r in results)
        if payload_ran:
            print(f"PAYLOADS RAN: {payload_ran}", flush=True)
    elapsed = time.monotonic() - started
    print()
    print(table(results))
    print()
    for name, how in notes.items():
        print(f"{name}: {how}")
    slowest = max(results, key=lambda r: r.seconds)
    big = [r for r in results if "big-performance" in r.name]
    print(f"slowest case: {slowest.name} ({slowest.seconds:.1f} s)"
          + "".join(f"; {r.name.split()[0]} of a 150,000-note MIDI file: {r.seconds:.1f} s ({r.category})" for r in big))
    print("payloads: none ran" if not payload_ran else f"payloads: {payload_ran} RAN")
    print(f"{len(results)} cases in {elapsed:.0f} s (seed {args.seed}"
          + (", --quick" if args.quick else "") + f"); python {sys.version.split()[0]}")
    if args.json:
        write_json(args.json, results, notes, args, elapsed, work)
    bad = [r for r in results if r.category in ("traceback", "hang", "wrong", "not one line") or r.clobbered or r.litter]
    return 1 if bad or payload_ran else 0


if __name__ == "__main__":
    sys.exit(main())
