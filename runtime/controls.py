"""Controls: the musical summaries a v3 model follows (graph input `controls` [B, C]).

Each control is one number that summarises a run of notes. In training, the controls of the
input row of note t are the summaries of the WINDOW notes that follow it (notes t+1 .. t+WINDOW
of the same piece, fewer at its end, none below MIN_NOTES); at generation they default to the
summaries of the primer's last WINDOW notes (continue in its character) and a caller may set
any of them. A negative value means "not given": the model then uses a value it learned for
that control. C++ and JavaScript consumers compute the same numbers bit for bit by following
the definitions below.

Definitions, over notes 1..m of a run (m >= 1; pitch p, step s, duration d, velocity v as
float32 values, every sum and quotient in float64 (IEEE double), p and v rounded first:
p := floor(p + 0.5), v := floor(v + 0.5)):
- a note i >= 2 starts a chord when s_i >= CHORD (30 ms); note 1 starts the first one.
  k = the number of chord starts; j = the last note that starts one.
- density: (k - 1) / (s_2 + s_3 + ... + s_j), the sum taken left to right, in onsets per
  second (onsets less than 30 ms apart count as one); not given (-1) when k = 1.
- chord_share: (number of notes i with s_i < CHORD (i >= 2) or s_{i+1} < CHORD (i < m)) / m.
- pitch_mean: (sum of p) / m.   pitch_spread: sqrt((m * sum of p^2 - (sum of p)^2) / m^2).
  (The sums are of integers, exact in float64 in any order; so is m * sum p^2 - (sum p)^2.)
- velocity_mean: (sum of v) / m.
- duration_median: the median of d (the middle one of the sorted durations, or the mean of
  the middle two: (a + b) / 2), in seconds.
- pc0 .. pc11: (number of notes with p mod 12 = k) / m, the pitch-class profile (C = pc0).
Every result is then rounded to float32, the graph's input type. IEEE basic operations (+, -,
*, /, sqrt, floor) are correctly rounded in every language, and the only sum of non-integers is
taken in a fixed order, so these definitions give the same bits everywhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import OptionsError

CHORD = 0.030          # seconds: onsets closer than this form one chord (as the generation report)
WINDOW = 64            # notes summarised: the WINDOW notes after a position (training), the
                       # primer's last WINDOW notes (generation default)
MIN_NOTES = 16         # fewer notes than this give no summaries (every control not given)
NOT_GIVEN = -1.0       # any negative value means "not given"
PITCH_CLASSES = tuple(f"pc{k}" for k in range(12))
CONTROLS = ("density", "chord_share", "pitch_mean", "pitch_spread", "velocity_mean",
            "duration_median", *PITCH_CLASSES)
C = len(CONTROLS)

UNITS = {"density": "onsets/s", "chord_share": "share of notes", "pitch_mean": "MIDI pitch",
         "pitch_spread": "semitones (standard deviation)", "velocity_mean": "MIDI velocity",
         "duration_median": "seconds", **{name: "share of notes" for name in PITCH_CLASSES}}

# What a caller may request (inclusive); values outside are refused naming the control.
RANGES: dict[str, tuple[float, float]] = {
    "density": (0.1, 50.0), "chord_share": (0.0, 1.0), "pitch_mean": (0.0, 127.0),
    "pitch_spread": (0.0, 64.0), "velocity_mean": (1.0, 127.0), "duration_median": (0.0, 8.0),
    **{name: (0.0, 1.0) for name in PITCH_CLASSES},
}

# The typical range of each control: the 10th to 90th percentile over the windows of the ASAP
# training side (benchmarks/v3_controls.py). The generation report requests values across it.
TYPICAL: dict[str, tuple[float, float]] = {
    "density": (3.2, 11.6), "chord_share": (0.31, 0.95), "pitch_mean": (55.0, 74.3),
    "pitch_spread": (7.6, 16.4), "velocity_mean": (48.4, 79.9), "duration_median": (0.048, 0.243),
    **{name: (0.0, 0.2) for name in PITCH_CLASSES},
}

# How the graph reads a given control x: (log(max(x, 0) + offset) - centre) / scale, one formula
# for every control (an offset large against x's range makes it nearly linear). Centres and
# scales are round numbers near the mean and spread over the ASAP training windows
# (benchmarks/v3_controls.py prints them): the network reads numbers of order 1.
NORMALISE: dict[str, tuple[float, float, float]] = {
    "density": (0.1, 1.95, 0.45), "chord_share": (1.0, 0.49, 0.15), "pitch_mean": (128.0, 5.25, 0.042),
    "pitch_spread": (16.0, 3.3, 0.13), "velocity_mean": (128.0, 5.26, 0.063), "duration_median": (0.01, -2.2, 0.6),
    **{name: (1.0, 0.08, 0.08) for name in PITCH_CLASSES},
}
assert tuple(RANGES) == CONTROLS and tuple(NORMALISE) == CONTROLS and tuple(TYPICAL) == CONTROLS


def summaries(notes: np.ndarray) -> np.ndarray:
    """The controls of a run of notes [m, 4]: float32 [C] (module docstring); every control
    NOT_GIVEN when m < MIN_NOTES, density NOT_GIVEN when the run is one chord."""
    return batch_summaries(np.asarray(notes, np.float32)[None], np.array([len(notes)]))[0]


def primer_summaries(primer: np.ndarray) -> np.ndarray:
    """The generation default: the summaries of the primer's last WINDOW notes."""
    return summaries(np.asarray(primer, np.float32)[-WINDOW:])


def batch_summaries(windows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Summaries of many runs at once: windows [N, W, 4] (float32), of which the first counts[n]
    notes of row n are the run (the rest is ignored) -> float32 [N, C]. Gives the same bits as
    `summaries` on each run alone (the training batches use it)."""
    windows = np.asarray(windows, np.float32)
    n, width = windows.shape[:2]
    counts = np.asarray(counts, np.int64)
    out = np.full((n, C), NOT_GIVEN, np.float32)
    if width == 0 or n == 0:
        return out
    valid = np.arange(width) < counts[:, None]                          # [N, W]
    m = np.maximum(counts, 1).astype(np.float64)
    pitch = np.floor(windows[..., 0].astype(np.float64) + 0.5) * valid
    velocity = np.floor(windows[..., 3].astype(np.float64) + 0.5) * valid
    step = windows[..., 1].astype(np.float64)
    duration = windows[..., 2].astype(np.float64)

    # chords: note i >= 2 (index 1..) starts one when its step is >= CHORD
    starts = np.zeros((n, width), bool)
    starts[:, 0] = True
    starts[:, 1:] = (step[:, 1:] >= CHORD) & valid[:, 1:]
    chords = starts.sum(axis=1)
    last = width - 1 - np.argmax(starts[:, ::-1], axis=1)               # j (0-based)
    span_steps = np.where(valid, step, 0.0)
    span_steps[:, 0] = 0.0
    span = np.cumsum(span_steps, axis=1)[np.arange(n), last]          # s_2 + ... + s_j, in order
    density = np.where(chords > 1, (chords - 1) / np.where(span > 0, span, 1.0), NOT_GIVEN)

    joins = np.zeros((n, width), bool)                                   # note i joins note i - 1
    joins[:, 1:] = (step[:, 1:] < CHORD) & valid[:, 1:]
    in_chord = joins.copy()
    in_chord[:, :-1] |= joins[:, 1:]
    chord_share = (in_chord & valid).sum(axis=1) / m

    s1, s2 = pitch.sum(axis=1), (pitch * pitch).sum(axis=1)
    pitch_mean = s1 / m
    pitch_spread = np.sqrt(np.maximum(m * s2 - s1 * s1, 0.0) / (m * m))
    velocity_mean = velocity.sum(axis=1) / m

    ordered = np.sort(np.where(valid, duration, np.inf), axis=1)
    rows = np.arange(n)
    low, high = (np.maximum(counts, 1) - 1) // 2, np.maximum(counts, 1) // 2
    duration_median = (ordered[rows, low] + ordered[rows, high]) / 2

    classes = np.mod(pitch, 12).astype(np.int64)
    profile = ((classes[..., None] == np.arange(12)) & valid[..., None]).sum(axis=1) / m[:, None]

    columns = [density, chord_share, pitch_mean, pitch_spread, velocity_mean, duration_median]
    full = np.column_stack([*columns, profile]).astype(np.float32)
    enough = counts >= MIN_NOTES
    out[enough] = full[enough]
    return out


def following(store: np.ndarray, index: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Training controls: for each position of `index` (any shape, indices into the note store
    [N, 4]), the summaries of the notes index+1 .. index+WINDOW that lie before `limit` (the end
    of that position's piece, same shape as index) -> float32 [..., C]."""
    flat, ends = index.reshape(-1), np.broadcast_to(limit, index.shape).reshape(-1)
    offsets = flat[:, None] + 1 + np.arange(WINDOW)
    counts = np.clip(ends - flat - 1, 0, WINDOW)
    windows = np.asarray(store[np.minimum(offsets, len(store) - 1)], np.float32)
    return batch_summaries(windows, counts).reshape(*index.shape, C)


# -- what generation feeds -----------------------------------------------------------------------
# The controls that describe one aspect together: timing, register, dynamics, key. A control a
# caller sets releases the others of its family from the primer's values (they become not
# given): asking for density 12 lets the model choose the articulation and chords that go with
# it, rather than the primer's slower ones (measured on the ASAP validation side: docs/v3-model.md).
FAMILIES = (("density", "chord_share", "duration_median"), ("pitch_mean", "pitch_spread"),
            ("velocity_mean",), PITCH_CLASSES)
# What generation holds at the primer's values by default: all but the register. Over 512 notes
# real music moves its register (median |last - first quarter| 5.9 semitones on the ASAP
# validation side); held at the primer's last 64 notes, it cannot (pitch overlap with the real
# continuation 0.53 against 0.59 with the register left to the model).
HELD = tuple(name for name in CONTROLS if name not in ("pitch_mean", "pitch_spread"))


def family(name: str) -> tuple[str, ...]:
    return next(f for f in FAMILIES if name in f)


def resolve(primer: np.ndarray, requested: dict[str, float | None] | None = None) -> np.ndarray:
    """The controls generation feeds after `primer` [P, 4] (float32 [C]): the requested ones
    (None: not given), their families' other members not given, the HELD ones at the primer's
    summaries (primer_summaries), the rest not given."""
    requested = dict(requested or {})
    unknown = sorted(set(requested) - set(CONTROLS))
    if unknown:
        raise OptionsError(f"controls: unknown {', '.join(unknown)}; known: {', '.join(CONTROLS)}", "controls")
    out = unset()
    summaries = primer_summaries(primer)
    released = {member for name in requested for member in family(name)}
    for i, name in enumerate(CONTROLS):
        if name in requested:
            value = requested[name]
            out[i] = NOT_GIVEN if value is None else value
        elif name in HELD and name not in released:
            out[i] = summaries[i]
    return check(out)


# -- keys --------------------------------------------------------------------------------------
# The pitch-class profile of major-key and of minor-key music with the tonic at 0, measured on
# the ASAP training side (benchmarks/v3_keys.py: each file's key by the Krumhansl-Kessler
# profiles, rotated to its tonic, averaged by notes). A key's profile is this one rotated.
KEY_PROFILES = {
    "major": (0.1553, 0.0343, 0.1016, 0.0435, 0.1103, 0.1002, 0.0384, 0.1429, 0.0521, 0.0940, 0.0468, 0.0806),
    "minor": (0.1575, 0.0527, 0.0791, 0.1118, 0.0474, 0.1031, 0.0373, 0.1371, 0.1005, 0.0403, 0.0740, 0.0592),
}
TONICS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
MODES = {"": "major", "major": "major", "maj": "major", "minor": "minor", "min": "minor", "m": "minor"}


def key_profile(name: str) -> np.ndarray:
    """"D minor", "F# major", "Bb", "eb min" -> the 12 pitch-class shares of that key (float32);
    OptionsError naming the text and what is allowed."""
    text = " ".join(str(name).strip().split())
    tonic, rest = text[:1].lower(), text[1:]
    accidental = rest[:1] if rest[:1] in ("#", "♯", "b", "♭") and not rest[:1].isspace() else ""
    mode = rest[len(accidental):].strip().lower()
    if tonic not in TONICS or mode not in MODES:
        raise OptionsError(f"--key {name!r} is not a key; write a tonic A-G, optionally # or b, then "
                           "major or minor (e.g. 'D minor', 'F# major', 'Bb')")
    shift = (TONICS[tonic] + ACCIDENTALS[accidental]) % 12
    return np.roll(np.array(KEY_PROFILES[MODES[mode]], np.float32), shift)


# -- what callers ask for --------------------------------------------------------------------
def check(values: Sequence[float] | np.ndarray, source: str = "controls") -> np.ndarray:
    """Controls as a caller gives them ([C] or [B, C]; negative = not given) -> float32, checked:
    OptionsError naming the control and its range for NaN, infinities, values out of range and
    the wrong count."""
    try:
        arr = np.array(values, np.float64)
    except (TypeError, ValueError):
        raise OptionsError(f"{source}: must be numbers, got {values!r}") from None
    if arr.ndim not in (1, 2) or arr.shape[-1] != C:
        raise OptionsError(f"{source}: must hold {C} values per row ({', '.join(CONTROLS)}), "
                           f"got shape {list(arr.shape)}")
    for name, column in zip(CONTROLS, np.moveaxis(arr, -1, 0)):
        column = np.atleast_1d(column)
        if not np.isfinite(column).all():
            raise OptionsError(f"{source}: {name} is {column[~np.isfinite(column)][0]}; give a number "
                               f"in {_range(name)} or a negative one for 'not given'")
        low, high = RANGES[name]
        bad = column[(column >= 0) & ((column < low) | (column > high))]
        if len(bad):
            raise OptionsError(f"{source}: {name} {bad[0]:g} is out of range; allowed {_range(name)} "
                               "or a negative value for 'not given'")
    return arr.astype(np.float32)


def _range(name: str) -> str:
    low, high = RANGES[name]
    return f"[{low:g}, {high:g}] {UNITS[name]}"


def unset(batch: int | None = None) -> np.ndarray:
    """Every control not given: [C], or [B, C]."""
    shape = (C,) if batch is None else (batch, C)
    return np.full(shape, NOT_GIVEN, np.float32)


def normalised(values: np.ndarray) -> np.ndarray:
    """The numpy form of the graph's reading of given controls (module NORMALISE), float64."""
    k = graph_constants()
    x = np.log(np.maximum(np.asarray(values, np.float64), 0.0) + np.array(k["offset"]))
    return (x - np.array(k["centre"])) / np.array(k["scale"])


def graph_constants() -> dict[str, list[float]]:
    """Per control: the offset, the centre and the scale of its reading (NORMALISE)."""
    return {"offset": [NORMALISE[n][0] for n in CONTROLS], "centre": [NORMALISE[n][1] for n in CONTROLS],
            "scale": [NORMALISE[n][2] for n in CONTROLS]}


def describe() -> dict[str, object]:
    """The controls input for the spec's readers: names in column order, units, ranges, the
    window and the not-given value (the definitions are this module's)."""
    return {"names": list(CONTROLS), "units": [UNITS[n] for n in CONTROLS],
            "ranges": [list(RANGES[n]) for n in CONTROLS], "window": WINDOW, "min_notes": MIN_NOTES,
            "chord": CHORD, "not_given": NOT_GIVEN}
