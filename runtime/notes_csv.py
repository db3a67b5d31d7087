"""Notes as CSV, one `pitch,step,duration` line per note after a header line.

This is how mpx and the C++ example meet in a file; %.9g keeps every float32 exactly.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import MidiError, OptionsError
from .midi import FEATURES, read_notes

HEADER = ",".join(FEATURES)


def write_csv(notes: np.ndarray, path: str | os.PathLike[str]) -> Path:
    notes = np.asarray(notes, dtype=np.float32).reshape(-1, 3)
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, notes, fmt="%.9g", delimiter=",", header=HEADER, comments="")
    return path


def read_csv(path: str | os.PathLike[str]) -> np.ndarray:
    """CSV notes -> float32 [N, 3]. A header line is optional."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MidiError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MidiError(path, f"cannot read as CSV text ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or (number == 1 and line.replace(" ", "") == HEADER):
            continue
        fields = line.split(",")
        try:
            if len(fields) != 3:
                raise ValueError(f"{len(fields)} fields")
            rows.append([float(f) for f in fields])
        except ValueError:
            raise MidiError(path, f"line {number}: expected 3 numbers pitch,step,duration, "
                                  f"got {line[:60]!r}") from None
    if not rows:
        raise MidiError(path, "holds no notes")
    return np.asarray(rows, dtype=np.float32)


def read_any(path: str | os.PathLike[str]) -> np.ndarray:
    """Notes from a .csv file or a MIDI file (by suffix)."""
    if Path(path).suffix.lower() == ".csv":
        return read_csv(path)
    return read_notes(path)


def write_any(notes: np.ndarray, path: str | os.PathLike[str], **midi_options: object) -> Path:
    """Write notes as .csv or as MIDI (any other suffix), atomically."""
    from .midi import write_midi
    if Path(path).suffix.lower() == ".csv":
        return write_csv(notes, path)
    return write_midi(notes, path, **midi_options)  # type: ignore[arg-type]


def last_notes(notes: np.ndarray, last: int | None, source: str) -> np.ndarray:
    """The last `last` notes (all of them for None); OptionsError when there are fewer."""
    if last is None:
        return notes
    if not isinstance(last, int) or last < 1:
        raise OptionsError(f"--last must be >= 1, got {last!r}")
    if last > len(notes):
        raise OptionsError(f"{source}: has {len(notes)} notes, fewer than --last {last}")
    return notes[-last:]
