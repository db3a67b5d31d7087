"""Piano roll: primer and continuation in two colours, so a user sees at a glance what was made."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import MpxError
from .midi import note_times


def piano_roll(primer: np.ndarray, continuation: np.ndarray, path: str | os.PathLike[str],
               title: str = "") -> Path:
    """Draw notes as bars (time x pitch) into a PNG; the continuation starts where the primer ends."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MpxError("plotting needs matplotlib: pip install 'mpx[plot]'") from None
    primer = np.asarray(primer, dtype=np.float64).reshape(-1, 3)
    continuation = np.asarray(continuation, dtype=np.float64).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    p_start, p_end = note_times(primer)
    offset = float(p_start[-1]) if len(primer) else 0.0
    c_start, c_end = note_times(continuation, offset)
    for notes, start, end, colour, label in ((primer, p_start, p_end, "tab:blue", "primer"),
                                             (continuation, c_start, c_end, "tab:orange", "generated")):
        if len(notes):
            ax.barh(notes[:, 0], np.maximum(end - start, 0.01), left=start, height=0.8,
                    color=colour, label=f"{label} ({len(notes)} notes)")
    if len(primer) and len(continuation):
        ax.axvline(offset, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch (MIDI)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
