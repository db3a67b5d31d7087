"""Piano roll: primer and continuation in two colours, loudness as opacity, so a user sees at a
glance what was made: its pitches, its rhythm and its dynamics."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checks import integer
from .contract import FEATURES
from .errors import OptionsError, missing_extra
from .midi import note_times
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


def plot_file(source: str | os.PathLike[str], out: str | os.PathLike[str], primer_notes: int = 0,
              force: bool = False) -> Path:
    """`mpx plot`: draw a MIDI or CSV file, its first `primer_notes` notes as the primer."""
    integer("primer_notes", primer_notes, 0)
    source = Path(source)
    out = check_outputs([out], [source], force=force, suffixes=PNG_SUFFIXES)[0]
    require_matplotlib()
    notes = read_any(source)
    if primer_notes > len(notes):
        raise OptionsError(f"{source}: has {len(notes)} notes, fewer than --primer-notes {primer_notes}")
    return piano_roll(notes[:primer_notes], notes[primer_notes:], out, title=source.name, replace=force)


def piano_roll(primer: np.ndarray, continuation: np.ndarray, path: str | os.PathLike[str],
               title: str = "", replace: bool = True) -> Path:
    """Draw notes as bars (time x pitch) into a PNG, atomically (replace=False: only if `path`
    does not exist by then); the continuation starts where the primer ends."""
    require_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    primer = np.asarray(primer, dtype=np.float64).reshape(-1, len(FEATURES))
    continuation = np.asarray(continuation, dtype=np.float64).reshape(-1, len(FEATURES))
    total = len(primer) + len(continuation)
    if total > MAX_DRAWN:
        continuation = continuation[: max(MAX_DRAWN - len(primer), 0)]
        primer = primer[:MAX_DRAWN]
        title = f"{title} (first {MAX_DRAWN:,} of {total:,} notes)".strip()
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    p_start, p_end = note_times(primer)
    offset = float(p_start[-1]) if len(primer) else 0.0
    c_start, c_end = note_times(continuation, offset)
    for notes, start, end, colour, label in ((primer, p_start, p_end, (0.12, 0.47, 0.71), "primer"),
                                             (continuation, c_start, c_end, (1.0, 0.5, 0.05), "generated")):
        if len(notes):
            segments = np.stack([np.stack([start, notes[:, 0]], 1),
                                 np.stack([np.maximum(end, start + 0.01), notes[:, 0]], 1)], axis=1)
            alpha = 0.25 + 0.75 * np.clip(notes[:, 3], 0, 127) / 127  # louder notes darker
            colours = np.column_stack([np.tile(colour, (len(notes), 1)), alpha])
            ax.add_collection(LineCollection(segments, colors=colours, linewidths=3, capstyle="butt",
                                             label=f"{label} ({len(notes)} notes)"))
    if len(primer) and len(continuation):
        ax.axvline(offset, color="grey", linestyle="--", linewidth=1)
    ax.autoscale()
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch (MIDI); opacity: velocity")
    ax.set_title(title)
    if total:
        ax.legend(loc="upper right")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, replace=replace) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
