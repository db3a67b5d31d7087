"""Notes as CSV, one `pitch,step,duration,velocity` line per note after a header line.

This is how mpx and the C++ and JavaScript consumers meet in a file; %.9g keeps every float32
exactly. A CSV of three columns (the v1 format, pitch,step,duration) is read with velocity
DEFAULT_VELOCITY, and a warning says so.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from . import notes as note_rules
from .atomic import atomic_path
from .checks import integer
from .contract import FEATURES
from .errors import MidiError, OptionsError
from .midi import DEFAULT_VELOCITY, read_notes, save_midi, write_midi
from .outputs import CSV_SUFFIXES, NOTE_SUFFIXES, check_outputs, check_suffix

log = logging.getLogger(__name__)

HEADER = ",".join(FEATURES)
HEADER_V1 = ",".join(FEATURES[:3])


def write_csv(notes: np.ndarray, path: str | os.PathLike[str], *, replace: bool = True) -> Path:
    """Write notes [N, 4] as CSV text (.csv), atomically (replace=False: only if `path` does not
    exist by then)."""
    path = Path(path)
    check_suffix(path, CSV_SUFFIXES, "write_csv")  # text under a .mid name is no MIDI file
    with atomic_path(path, replace=replace) as tmp:
        save_csv(notes, tmp)
    return path


def save_csv(notes: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write notes as CSV to a path no one else sees yet (the caller makes it atomic)."""
    notes = np.asarray(notes, dtype=np.float32).reshape(-1, len(FEATURES))
    if not np.isfinite(notes).all():
        raise OptionsError("notes hold NaN or infinite values; nothing written")
    np.savetxt(path, notes, fmt="%.9g", delimiter=",", header=HEADER, comments="")


def read_csv(path: str | os.PathLike[str]) -> np.ndarray:
    """CSV notes -> float32 [N, 4]. A header line is optional; so is the velocity column."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MidiError(path, "no such file") from None
    except IsADirectoryError:
        raise MidiError(path, "is a directory, expected a CSV file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MidiError(path, f"cannot read as CSV text ({exc})") from None
    rows: list[list[float]] = []
    where: list[tuple[int, str]] = []  # (line number, text) of each note, for messages
    width = None
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or (number == 1 and line.replace(" ", "") in (HEADER, HEADER_V1)):
            continue
        fields = line.split(",")
        width = width or len(fields)
        try:
            if len(fields) not in (3, 4) or len(fields) != width:
                raise ValueError(f"{len(fields)} fields")
            rows.append([float(f) for f in fields])
            where.append((number, line))
        except ValueError:
            raise MidiError(path, f"line {number}: expected {width if width in (3, 4) else 4} numbers "
                                  f"{HEADER}, got {line[:60]!r}") from None
    if not rows:
        raise MidiError(path, "holds no notes")
    with np.errstate(over="ignore"):  # 1e39 becomes inf here, which check_rows refuses
        notes = np.asarray(rows, dtype=np.float32)
    if width == 3:
        log.warning("%s: no velocity column; using velocity %d for every note", path, DEFAULT_VELOCITY)
        notes = np.concatenate([notes, np.full((len(notes), 1), DEFAULT_VELOCITY, np.float32)], axis=1)
    return note_rules.check_rows(notes, path, where)


def read_any(path: str | os.PathLike[str], pedal: bool = False) -> np.ndarray:
    """Notes from a .csv file or a MIDI file (by suffix); pedal=True: a MIDI file's sounding
    durations (the sustain pedal, runtime/pedal.py). A CSV holds durations as written."""
    if Path(path).suffix.lower() == ".csv":
        return read_csv(path)
    return read_notes(path, pedal=pedal)


def write_any(notes: np.ndarray, path: str | os.PathLike[str], *, replace: bool = True,
              **midi_options: object) -> Path:
    """Write notes as .csv or as MIDI (.mid, .midi), by the suffix, atomically (replace=False: only if
    `path` does not exist by then)."""
    if Path(path).suffix.lower() == ".csv":
        return write_csv(notes, path, replace=replace)
    return write_midi(notes, path, replace=replace, **midi_options)  # type: ignore[arg-type]


def save_any(notes: np.ndarray, path: str | os.PathLike[str], *, suffix: str | None = None,
             **midi_options: object) -> None:
    """Write notes as .csv or MIDI (by `suffix`, else the path's) to a path no one else sees yet
    (a staged file of a set: runtime/atomic.py's atomic_set makes the set atomic)."""
    if (suffix or Path(path).suffix).lower() == ".csv":
        save_csv(notes, path)
    else:
        save_midi(notes, path, **midi_options)  # type: ignore[arg-type]


def last_notes(notes: np.ndarray, last: int | None, source: str) -> np.ndarray:
    """The last `last` notes (all of them for None); OptionsError when there are fewer."""
    if last is None:
        return notes
    integer("last", last, 1)
    if last > len(notes):
        raise OptionsError(f"last {last}: {source} has only {len(notes)} notes", "last")
    return notes[-last:]


def convert(source: str | os.PathLike[str], out: str | os.PathLike[str], last: int | None = None,
            force: bool = False, pedal: bool = False) -> tuple[Path, int]:
    """`mpx notes`: MIDI or CSV -> MIDI or CSV (by suffix); returns the path and the note count.
    The output is checked first: a known kind, not the source, new unless `force`. pedal=True:
    a MIDI source's sounding durations."""
    out = check_outputs([out], [source], force=force, suffixes=NOTE_SUFFIXES)[0]
    values = last_notes(read_any(source, pedal), last, str(source))
    return write_any(values, out, replace=force), len(values)
