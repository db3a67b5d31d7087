"""Piano roll: primer and continuation in two colours, loudness as opacity, so a user sees at a
glance what was made: its pitches, its rhythm and its dynamics."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .checks import integer
from .contract import FEATURES
from .errors import OptionsError, missing_extra
from .midi import note_times
from .notes import note_name
from .notes_csv import read_any
from .outputs import PNG_SUFFIXES, check_outputs

# A roll of more notes than this draws the first MAX_DRAWN and says so: drawing costs time and
# memory per note (a 5 MB performance, ~300k notes, took minutes and GBs as one bar per note).
MAX_DRAWN = 20_000


def require_matplotlib() -> None:
    """Fail in one line, before any work, when the plotting extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise missing_extra("plotting", "matplotlib", extra="plot") from None


MAX_TAKES = 8  # rolls in one picture; more takes draw the first MAX_TAKES and say so


def plot_file(source: str | os.PathLike[str], out: str | os.PathLike[str], primer_notes: int = 0,
              force: bool = False) -> Path:
    """`mpx plot`: draw a MIDI or CSV file, its first `primer_notes` notes as the primer."""
    integer("primer_notes", primer_notes, 0)
    source = Path(source)
    out = check_outputs([out], [source], force=force, suffixes=PNG_SUFFIXES)[0]
    require_matplotlib()
    notes = read_any(source)
    if primer_notes > len(notes):
        raise OptionsError(f"primer_notes {primer_notes}: {source} has only {len(notes)} notes", "primer_notes")
    # a file's notes are not "generated": mpx cannot know where they came from
    return piano_roll(notes[:primer_notes], notes[primer_notes:], out, title=source.name,
                      label="after the primer" if primer_notes else "notes", replace=force)


def piano_roll(primer: np.ndarray, continuation: np.ndarray | Sequence[np.ndarray], path: str | os.PathLike[str],
               title: str = "", label: str = "generated", takes: list[str] | None = None,
               replace: bool = True) -> Path:
    """Draw notes as bars (time x pitch, note names on the axis) into a PNG, atomically
    (replace=False: only if `path` does not exist by then); the continuation starts where the
    primer ends. `continuation` [n, 4] is one roll; [K, n, 4] or a list of K [n_k, 4] (the takes
    of `mpx run --num-outputs`) is one roll per take, named by `takes`, the primer in each."""
    require_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    primer = np.asarray(primer, dtype=np.float64).reshape(-1, len(FEATURES))
    one = isinstance(continuation, np.ndarray) and continuation.ndim < 3
    rolls = [np.asarray(roll, dtype=np.float64).reshape(-1, len(FEATURES))
             for roll in ([continuation] if one else continuation)]
    names = list(takes or [])[:len(rolls)]
    if len(rolls) > MAX_TAKES:
        title = f"{title} (takes 1-{MAX_TAKES} of {len(rolls)})".strip()
        rolls, names = rolls[:MAX_TAKES], names[:MAX_TAKES]
    fig, axes = plt.subplots(len(rolls), 1, figsize=(14, 2.5 + 2.5 * len(rolls)), dpi=100, sharex=True,
                             squeeze=False)
    for k, (ax, roll) in enumerate(zip(axes[:, 0], rolls)):
        heading = names[k] if k < len(names) and len(rolls) > 1 else ""
        _draw(ax, primer, roll, label, heading if k else " - ".join(filter(None, (title, heading))))
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, replace=replace) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def _draw(ax: Any, primer: np.ndarray, continuation: np.ndarray, label: str, title: str) -> None:
    """One roll: the primer, then the continuation from where the primer's last note starts."""
    from matplotlib.collections import LineCollection
    total = len(primer) + len(continuation)
    if total > MAX_DRAWN:
        continuation = continuation[: max(MAX_DRAWN - len(primer), 0)]
        primer = primer[:MAX_DRAWN]
        title = f"{title} (first {MAX_DRAWN:,} of {total:,} notes)".strip()
    p_start, p_end = note_times(primer)
    offset = float(p_start[-1]) if len(primer) else 0.0
    c_start, c_end = note_times(continuation, offset)
    for notes, start, end, colour, name in ((primer, p_start, p_end, (0.12, 0.47, 0.71), "primer"),
                                            (continuation, c_start, c_end, (1.0, 0.5, 0.05), label)):
        if len(notes):
            segments = np.stack([np.stack([start, notes[:, 0]], 1),
                                 np.stack([np.maximum(end, start + 0.01), notes[:, 0]], 1)], axis=1)
            alpha = 0.25 + 0.75 * np.clip(notes[:, 3], 0, 127) / 127  # louder notes darker
            colours = np.column_stack([np.tile(colour, (len(notes), 1)), alpha])
            ax.add_collection(LineCollection(segments, colors=colours, linewidths=3, capstyle="butt",
                                             label=f"{name} ({len(notes)} notes)"))
    if len(primer) and len(continuation):
        ax.axvline(offset, color="grey", linestyle="--", linewidth=1)
    ax.autoscale()
    _pitch_axis(ax, np.concatenate([primer[:, 0], continuation[:, 0]]))
    ax.set_title(title)
    if total:
        ax.legend(loc="upper right")


def _pitch_axis(ax: Any, pitches: np.ndarray) -> None:
    """Note names on the pitch axis: every C (C4 = MIDI 60), and every note where the range is small."""
    low, high = (int(pitches.min()), int(pitches.max())) if len(pitches) else (60, 72)
    ax.set_ylim(low - 1.5, high + 1.5)
    step = 1 if high - low <= 12 else 12
    ticks = [p for p in range(low - 1, high + 2) if 0 <= p <= 127 and (step == 1 or p % 12 == 0)]
    ax.set_yticks(ticks, [note_name(p) for p in ticks])
    ax.set_yticks(range(max(low - 1, 0), min(high + 2, 128)), minor=True)
    ax.grid(axis="y", which="major", color="0.85", linewidth=0.6)
    ax.set_ylabel("pitch; opacity: velocity")
