"""Notes, the one data type of mpx: float32 [N, 4] = (pitch, step, duration, velocity).

pitch is the MIDI number 0..127, step the seconds from the previous note's onset (0 for the
first note), duration in seconds, velocity 1..127 (0 is a note-off in MIDI, not a note). This
module holds the columns, the ranges a note can take, and the checks: of notes given to mpx
(a primer, a CSV file) and of notes a model made (which must lie within its own bins).
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import bins
from .config import ModelConfig
from .contract import FEATURES
from .errors import ArtifactError, MidiError, OptionsError

COLUMNS = FEATURES
PITCH, STEP, DURATION, VELOCITY = (COLUMNS.index(name) for name in ("pitch", "step", "duration", "velocity"))
INDEX = {name: i for i, name in enumerate(COLUMNS)}
RANGES: dict[str, tuple[float, float]] = {   # inclusive bounds of every column
    "pitch": (0.0, 127.0), "step": (0.0, math.inf), "duration": (0.0, math.inf), "velocity": (1.0, 127.0)}
RULE = "pitch must be an integer 0..127, velocity 1..127, step and duration >= 0"


def check(notes: np.ndarray, source: str = "primer") -> np.ndarray:
    """Notes given to mpx [N, 4] (finite, within RANGES) -> a float32 copy; OptionsError
    naming `source` and the column otherwise. Pitches need not be integers here (the graph
    reads them as they are); a CSV file is held to more (check_rows)."""
    arr = np.array(notes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != len(COLUMNS):
        raise OptionsError(f"{source}: notes must have shape [N, {len(COLUMNS)}] ({', '.join(COLUMNS)}), "
                           f"got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise OptionsError(f"{source}: notes hold NaN or infinite values")
    if arr.size:
        if _outside(arr[:, PITCH], "pitch").any():
            raise OptionsError(f"{source}: pitch must be 0..127")
        if _outside(arr[:, STEP], "step").any() or _outside(arr[:, DURATION], "duration").any():
            raise OptionsError(f"{source}: step and duration must be >= 0")
        if _outside(arr[:, VELOCITY], "velocity").any():
            raise OptionsError(f"{source}: velocity must be 1..127")
    return arr


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific pitch name: 60 -> C4, 69 -> A4, 21 -> A0."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def check_given(values: np.ndarray, source: str = "given") -> np.ndarray:
    """Attributes of a next note fixed by a caller ([4] or [rows, 4]; negative: drawn) -> float32;
    OptionsError naming the attribute and its range otherwise."""
    try:
        arr = np.array(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise OptionsError(f"{source}: must be numbers, got {values!r}", "given") from None
    if arr.ndim not in (1, 2) or arr.shape[-1] != len(COLUMNS):
        raise OptionsError(f"{source}: must hold {len(COLUMNS)} values per row ({', '.join(COLUMNS)}; "
                           f"negative: drawn), got shape {list(arr.shape)}", "given")
    if not np.isfinite(arr).all():
        raise OptionsError(f"{source}: holds NaN or infinite values", "given")
    for name, column in INDEX.items():
        values_ = arr[..., column]
        if _outside(values_[values_ >= 0], name).any():
            low, high = RANGES[name]
            raise OptionsError(f"{source}: {name} must be {low:g}..{high:g} (or negative: drawn), got "
                               f"{values_[(values_ >= 0) & _outside(values_, name)][0]:g}", "given")
    return arr


def _outside(values: np.ndarray, column: str) -> np.ndarray:
    low, high = RANGES[column]
    return (values < low) | (values > high)


def check_rows(notes: np.ndarray, path: str | os.PathLike[str],
               lines: list[tuple[int, str]] | None = None) -> np.ndarray:
    """Refuse, naming the file and the note, what no note can be: NaN, a pitch that is not an
    integer 0..127, a velocity outside 1..127, negative times. Nothing is clamped silently.
    `lines` (a text file's line number and text of each note) names the note as the file has it."""
    bad = ~np.isfinite(notes).all(axis=1)
    for name, column in INDEX.items():
        bad |= _outside(notes[:, column], name)
    bad |= notes[:, PITCH] != np.round(notes[:, PITCH])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        said = f"line {lines[row][0]}: {lines[row][1][:60]!r}" if lines else f"note {row + 1}: {notes[row].tolist()}"
        raise MidiError(path, f"{said} is not a note ({RULE})")
    return notes


def limits(config: ModelConfig) -> list[tuple[float, float]]:
    """Per column, the values a model of this config can make: its bins' range."""
    edges = {b.name: float(b.edges()[-1]) for b in bins.of(config)[1:3]}
    return [RANGES["pitch"], (0.0, edges["step"]), (0.0, edges["duration"]), RANGES["velocity"]]


def check_made(notes: np.ndarray, config: ModelConfig, source: object) -> None:
    """Refuse notes no intact model can make. A damaged file (bytes flipped in its weights or
    its decode constants; ONNX and safetensors carry no checksum, torch.jit.load checks none)
    may still load and run, and then make notes outside its own bins: steps of hours that no
    MIDI reader accepts back. Every note an intact graph samples lies within its spec's bins."""
    for column, (name, (low, high)) in enumerate(zip(COLUMNS, limits(config))):
        values = notes[..., column]
        bad = ~np.isfinite(values) | (values < low - 1e-6) | (values > high * (1 + 1e-5) + 1e-6)
        if bad.any():
            raise ArtifactError(f"{source}: the model made a note outside its own spec "
                                f"({name} {float(values[bad][0]):g}, its bins allow {low:g}..{high:g}): "
                                "the file is damaged")


def random(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    """Random notes [batch, time, 4] within RANGES (parity cases): any pitch and velocity,
    exponential steps (mean 0.15 s) and durations (mean 0.4 s)."""
    notes = np.empty((batch, time, len(COLUMNS)), np.float32)
    notes[..., PITCH] = rng.integers(0, 128, (batch, time))
    notes[..., STEP] = rng.exponential(0.15, (batch, time))
    notes[..., DURATION] = rng.exponential(0.4, (batch, time))
    notes[..., VELOCITY] = rng.integers(1, 128, (batch, time))
    return notes
