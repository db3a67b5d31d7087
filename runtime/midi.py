"""MIDI codec: MIDI file <-> notes array float32 [N, 4] = (pitch, step, duration, velocity).

pitch is the MIDI number 0..127, step the time from the previous note's start to this one's
(0 for the first note), duration = end - start, velocity the note-on velocity 1..127; times in
seconds, so tempo changes and tick resolution are the reader's job: pretty_midi's rules, read by
symusic's C++ parser where it can (runtime/midi_fast.py), the sustain pedal optional
(runtime/pedal.py).
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pretty_midi

from . import midi_fast, pedal as sustain
from .atomic import atomic_path
from .checks import integer, number
from .errors import MidiError, OptionsError
from .outputs import MIDI_SUFFIXES, check_suffix

log = logging.getLogger(__name__)

# Written files use this resolution: at the default 120 bpm one tick is ~0.52 ms.
RESOLUTION = 960
DEFAULT_VELOCITY = 100  # for notes that come without one (a 3-column CSV)
TEMPO_RANGE = (1.0, 1000.0)  # bpm a written file may say


def read_notes(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
               instruments: Iterable[int] | None = None, pedal: bool = False,
               fast: bool = True) -> np.ndarray:
    """Read a MIDI file (path or its bytes) into notes float32 [N, 4].

    Notes of every non-drum instrument are merged, unless `instruments` lists the indices
    (in file order) of the instruments to keep. Order: start time, then pitch, end, velocity.
    pedal=True: durations are how long notes sound with the sustain pedal (controller 64), as
    runtime/pedal.py defines; False: how long their keys are held (the MIDI note-offs).
    The notes are pretty_midi's; symusic's C++ parser reads them ~50x faster where it can
    (runtime/midi_fast.py; fast=False reads with pretty_midi alone).
    Raises MidiError naming the file when it cannot be parsed or holds no notes.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data = _read(source, label)
    events = _fast_events(data, label) if fast and instruments is None else None
    if events is None:
        events = _pretty_events(_parse(data, label), instruments, label)
    if not len(events.pitches):
        raise MidiError(label, "holds no notes")
    starts, ends = events.starts, events.ends
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()) or starts.min() < 0:
        raise MidiError(label, "has notes at impossible times (damaged tempo or timing events)")
    pitches, velocities = events.pitches, events.velocities
    if pedal:
        order = np.lexsort((velocities, ends, pitches, starts))
        starts, ends, pitches, velocities = starts[order], ends[order], pitches[order], velocities[order]
        ends, kept = sustain.sounding(starts, ends, pitches, events.groups[order], events.pedal_groups,
                                      events.pedal_times, events.pedal_values)
        starts, ends, pitches, velocities = starts[kept], ends[kept], pitches[kept], velocities[kept]
    return notes_from_events(pitches, starts, ends, velocities)


def _read(source: str | os.PathLike[str] | bytes, label: str) -> bytes:
    if not isinstance(source, bytes):
        try:
            source = Path(source).read_bytes()
        except FileNotFoundError:
            raise MidiError(label, "no such file") from None
        except IsADirectoryError:
            raise MidiError(label, "is a directory, expected a MIDI file") from None
        except OSError as exc:
            raise MidiError(label, f"cannot read ({exc.strerror or exc})") from None
    if not source:
        raise MidiError(label, "is empty (0 bytes)")
    if not source.startswith(b"MThd") and b"MThd" not in source[:1024]:
        raise MidiError(label, "is not a MIDI file (no MThd header)")
    return source


def _fast_events(data: bytes, label: str) -> midi_fast.Events | None:
    try:
        return midi_fast.read(data)
    except Exception as exc:  # noqa: BLE001 - a gap in the fast reader is never the user's error
        log.debug("%s: the fast reader failed (%s); reading with pretty_midi", label, exc)
        return None


def _pretty_events(midi: pretty_midi.PrettyMIDI, instruments: Iterable[int] | None,
                   label: str) -> midi_fast.Events:
    chosen = _select_instruments(midi, instruments, label)
    notes = [(n.pitch, n.start, n.end, n.velocity, g) for g, inst in enumerate(chosen) for n in inst.notes]
    ccs = [(g, c.time, c.value) for g, inst in enumerate(chosen) for c in inst.control_changes
           if c.number == midi_fast.SUSTAIN]
    pitches, starts, ends, velocities, groups = (np.asarray(column, np.float64) for column in zip(*notes)) \
        if notes else (np.zeros(0),) * 5
    cc_groups, cc_times, cc_values = (np.asarray(column, np.float64) for column in zip(*ccs)) \
        if ccs else (np.zeros(0),) * 3
    return midi_fast.Events(pitches=pitches, starts=starts, ends=ends, velocities=velocities,
                            groups=groups.astype(np.int64), pedal_groups=cc_groups.astype(np.int64),
                            pedal_times=cc_times, pedal_values=cc_values.astype(np.int64))


def _parse(source: bytes, label: str) -> pretty_midi.PrettyMIDI:
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about tempo events on non-first tracks; harmless here.
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(io.BytesIO(source))
    except MemoryError:
        raise MidiError(label, "cannot parse MIDI (it asks for more memory than there is)") from None
    except Exception as exc:  # noqa: BLE001 - the codec boundary, see below
        # pretty_midi and mido raise whatever the damage provokes: OSError, EOFError,
        # ValueError, KeyError, IndexError, mido's KeySignatureError (an Exception of its own),
        # and more in each release. A list of types misses the next one, and a bad file must
        # never stop a corpus, so everything a parse raises becomes a MidiError naming the file.
        raise MidiError(label, f"cannot parse MIDI ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "file ends early, truncated?"
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else "") or type(exc).__name__


def _select_instruments(midi: pretty_midi.PrettyMIDI, instruments: Iterable[int] | None,
                        label: str) -> list[pretty_midi.Instrument]:
    if instruments is None:
        return [inst for inst in midi.instruments if not inst.is_drum]
    chosen = []
    for index in instruments:
        if not 0 <= index < len(midi.instruments):
            raise MidiError(label, f"has no instrument {index} "
                                   f"(it has {len(midi.instruments)}: 0..{len(midi.instruments) - 1})")
        chosen.append(midi.instruments[index])
    return chosen


def notes_from_events(pitches: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                      velocities: np.ndarray) -> np.ndarray:
    """Absolute note events -> notes [N, 4], ordered by start, pitch, end, velocity (one order
    whatever order the events come in)."""
    order = np.lexsort((velocities, ends, pitches, starts))
    starts, ends, pitches, velocities = starts[order], ends[order], pitches[order], velocities[order]
    steps = np.diff(starts, prepend=starts[0])
    return np.stack([pitches, steps, ends - starts, velocities], axis=1).astype(np.float32)


def note_times(notes: np.ndarray, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Notes [N, 4] -> (start, end) in seconds, the first note starting at offset + its step."""
    notes = np.asarray(notes, dtype=np.float64)
    starts = offset + np.cumsum(notes[:, 1])
    return starts, starts + notes[:, 2]


def to_pretty_midi(notes: np.ndarray, *, program: int = 0, velocity: int | None = None,
                   tempo: float = 120.0) -> pretty_midi.PrettyMIDI:
    """Notes [N, 4] -> a one-instrument PrettyMIDI object, with the notes' own velocities
    unless `velocity` sets one for all.

    Every note lasts at least one tick, so a zero-length prediction still round-trips as a note
    (MIDI drops a note whose off event shares its on event's tick).
    """
    check_write_options(program, velocity, tempo)
    notes = np.asarray(notes, dtype=np.float64)
    if notes.ndim != 2 or notes.shape[1] != 4:
        raise OptionsError(f"notes must have shape [N, 4], got {list(notes.shape)}")
    if not np.isfinite(notes).all():  # np.rint(nan) cast to int is an arbitrary pitch: refuse
        raise OptionsError("notes hold NaN or infinite values; nothing written")
    midi = pretty_midi.PrettyMIDI(resolution=RESOLUTION, initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=program)
    min_len = 60.0 / (tempo * RESOLUTION)
    starts, ends = note_times(np.clip(notes, 0.0, None))
    pitches = np.clip(np.rint(notes[:, 0]), 0, 127).astype(int)
    velocities = np.full(len(notes), velocity) if velocity else np.clip(np.rint(notes[:, 3]), 1, 127).astype(int)
    for pitch, start, end, vel in zip(pitches, starts, np.maximum(ends, starts + min_len), velocities):
        inst.notes.append(pretty_midi.Note(velocity=int(vel), pitch=int(pitch),
                                           start=float(start), end=float(end)))
    midi.instruments.append(inst)
    return midi


def write_midi(notes: np.ndarray, path: str | os.PathLike[str], *, program: int = 0,
               velocity: int | None = None, tempo: float = 120.0, replace: bool = True) -> Path:
    """Write notes [N, 4] as a MIDI file (.mid or .midi), atomically (replace=False: only if `path` does not
    exist by then, runtime/atomic.py). Returns the path written."""
    path = Path(path)
    check_suffix(path, MIDI_SUFFIXES, "write_midi")  # MIDI bytes under another name fool every program
    with atomic_path(path, replace=replace) as tmp:
        save_midi(notes, tmp, program=program, velocity=velocity, tempo=tempo, name=path)
    return path


def save_midi(notes: np.ndarray, path: str | os.PathLike[str], *, program: int = 0,
              velocity: int | None = None, tempo: float = 120.0, name: Path | None = None) -> None:
    """Write notes [N, 4] as a MIDI file to a path no one else sees yet (a temporary or staged
    file: the caller makes it atomic); `name` is the output's own name, for the warning."""
    midi = to_pretty_midi(notes, program=program, velocity=velocity, tempo=tempo)
    midi.write(str(path))
    if midi.time_to_tick(midi.get_end_time()) > pretty_midi.pretty_midi.MAX_TICK:
        log.warning("%s: lasts %.0f minutes, longer than pretty_midi (and tools built on it) reads back; "
                    "mpx reads it, but write a .csv for runs this long", name or path, midi.get_end_time() / 60)


def check_write_options(program: int, velocity: int | None, tempo: float) -> None:
    integer("program", program, 0, 127, allowed="0..127 (a General MIDI program)")
    if velocity is not None:
        integer("velocity", velocity, 1, 127)
    number("tempo", tempo, *TEMPO_RANGE, unit="bpm")
