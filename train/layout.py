"""Which metadata describes DATA, read before any MIDI file is parsed.

- MAESTRO: maestro-v*.csv / .json at the top of a DATA folder (train/maestro.py): the
  official split and the piece of each performance;
- ASAP: metadata.csv (composer, title, midi_performance): the piece of each performance, the
  split then made by piece;
- anything else: no metadata; each file is its own group, split by its content.
A DATA folder is a directory input or the fixed part of a glob pattern (the tutorial's
'maestro-v2.0.0/*/*.midi' finds maestro-v2.0.0/maestro-v2.0.0.csv). `--metadata` names the file
instead of searching for it.
"""
from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from mpx.runtime.errors import MpxError

from . import maestro
from .split import Layout

ASAP_NAME = "metadata.csv"


def read_asap(path: Path) -> Layout:
    """ASAP's metadata.csv (composer, title, midi_performance) -> the piece of each file."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MpxError(f"{path}: cannot read metadata ({exc})") from None
    needed = {"composer", "title", "midi_performance"}
    if not rows or not needed <= set(rows[0]):
        raise MpxError(f"{path}: metadata needs columns {sorted(needed)} (ASAP's), or MAESTRO's "
                       "midi_filename, canonical_composer, canonical_title, split")
    root = path.parent
    return Layout(path, "pieces", {(root / row["midi_performance"]).resolve(): f"{row['composer']}/{row['title']}"
                                   for row in rows})


def read_metadata(path: Path) -> Layout:
    """A metadata file named with --metadata: MAESTRO's or ASAP's, told apart by name and columns."""
    if not path.is_file():
        raise MpxError(f"{path}: no such metadata file")
    if maestro.is_maestro(path) or "midi_filename" in _header(path):
        return maestro.read(path)
    return read_asap(path)


def find_layout(inputs: Sequence[str | os.PathLike[str]], metadata: str | os.PathLike[str] | None) -> Layout:
    """The layout of DATA: `metadata` if given, else what the DATA folders hold."""
    if metadata:
        return read_metadata(Path(metadata))
    layout = Layout()
    for root in dict.fromkeys(r for r in map(_root_of, inputs) if r is not None):
        found = maestro.find(root)
        if found:
            layout = layout.merged(maestro.read(found))
        elif (root / ASAP_NAME).is_file():
            layout = layout.merged(read_asap(root / ASAP_NAME))
    return layout


def _root_of(item: str | os.PathLike[str]) -> Path | None:
    """The folder a DATA input names: a directory itself, or the fixed part of a glob pattern."""
    path = Path(item)
    if path.is_dir():
        return path
    if not glob.has_magic(str(item)):
        return None
    fixed = []
    for part in path.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    return root if root.is_dir() else None


def _header(path: Path) -> set[str]:
    try:
        with open(path, newline="") as fh:
            return set(next(csv.reader(fh), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
