"""The sustain pedal (controller 64): how long notes sound, not how long keys are held.

A note whose key is released while the pedal is down sounds on until the pedal lifts, or until
the same key is struck again (then it ends at that onset) - the rule of Magenta's note-sequence
code (sequences_lib.apply_sustain_control_changes), vectorised, per instrument (a track's channel
and program, as pretty_midi and Magenta group notes):

- a controller 64 value >= 64 puts the pedal down, < 64 lifts it; on one tick the pedal events
  come before note-ons, note-ons before note-offs, a lift after a press;
- a key struck again while the pedal is down ends every earlier note of that key still sounding,
  held or sustained; a note ended on its own onset that way is dropped (two strikes of a key on
  one tick: the later one is kept);
- a pedal still down at the end of the file holds its notes to the file's last event (the last
  note-off or pedal event);
- a file with pedal events and no notes has no notes, as without the pedal.
"""
from __future__ import annotations

import numpy as np

DOWN = 64  # controller values from this up press the pedal


def sounding(starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray, groups: np.ndarray,
             pedal_groups: np.ndarray, pedal_times: np.ndarray, pedal_values: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(sounding ends, kept mask) for notes given in processing order (start, pitch, end,
    velocity); times in seconds, float64."""
    new_ends = ends.astype(np.float64).copy()
    kept = np.ones(len(starts), bool)
    if not len(starts):
        return new_ends, kept
    last = max(float(ends.max()), float(starts.max()), float(pedal_times.max()) if len(pedal_times) else 0.0)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        mine = pedal_groups == group
        _sustain_group(starts[rows], ends[rows], pitches[rows], pedal_times[mine], pedal_values[mine], last,
                       new_ends, kept, rows)
    return new_ends, kept


def _sustain_group(starts: np.ndarray, ends: np.ndarray, pitches: np.ndarray, times: np.ndarray,
                   values: np.ndarray, last: float, new_ends: np.ndarray, kept: np.ndarray,
                   rows: np.ndarray) -> None:
    lifts = values < DOWN
    order = np.lexsort((lifts, times))  # per tick: presses, then lifts (a stable sort)
    times, lifts = times[order], lifts[order]
    lift_times = times[lifts]

    def down_at(t: np.ndarray) -> np.ndarray:
        """The pedal after every pedal event up to and including time t."""
        at = np.searchsorted(times, t, side="right") - 1
        return (at >= 0) & ~lifts[np.maximum(at, 0)] if len(times) else np.zeros(len(t), bool)

    # released while the pedal is down: sounds until the next lift (or the file's end)
    held = down_at(ends)
    after = np.searchsorted(lift_times, ends, side="right")
    lifted = np.where(after < len(lift_times), lift_times[np.minimum(after, max(len(lift_times) - 1, 0))]
                      if len(lift_times) else last, last)
    end = np.where(held, lifted, ends)
    # cut by the next strike of the same key made with the pedal down (in processing order)
    strike = down_at(starts)
    by_key = np.lexsort((np.arange(len(starts)), pitches))
    key, struck = pitches[by_key], strike[by_key]
    position = np.arange(len(by_key))
    upcoming = np.where(struck, position, len(by_key))
    nearest = np.minimum.accumulate(upcoming[::-1])[::-1]  # first strike at or after each position
    following = np.r_[nearest[1:], len(by_key)]            # ... strictly after it
    valid = following < len(by_key)
    valid[valid] &= key[following[valid]] == key[valid]
    cut = np.full(len(starts), np.inf)
    cut[by_key[valid]] = starts[by_key[following[valid]]]
    end = np.minimum(end, cut)
    new_ends[rows] = end
    kept[rows] = end > starts
