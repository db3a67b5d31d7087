"""Train / validation / test split by piece, never by chance per file.

Where a metadata file says which performances are of the same piece (ASAP's metadata.csv:
composer + title), every performance of a piece goes to the same side. Otherwise each file is
its own group, keyed by content so a file copied under two names still lands on one side.
The side is a hash of the group key: stable when files are added or removed.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from mpx.runtime.errors import MpxError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def read_piece_metadata(path: Path) -> dict[Path, str]:
    """metadata.csv (composer, title, midi_performance) -> {resolved file path: piece key}."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MpxError(f"{path}: cannot read metadata ({exc})") from None
    needed = {"composer", "title", "midi_performance"}
    if not rows or not needed <= set(rows[0]):
        raise MpxError(f"{path}: metadata needs columns {sorted(needed)}")
    root = path.parent
    return {(root / row["midi_performance"]).resolve(): f"{row['composer']}/{row['title']}"
            for row in rows}


def find_metadata(inputs: Sequence[str]) -> Path | None:
    """A metadata.csv at the top of a directory input (ASAP's layout), if there is one."""
    for item in inputs:
        candidate = Path(item) / "metadata.csv"
        if Path(item).is_dir() and candidate.is_file():
            return candidate
    return None


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def assign(groups: Sequence[str], val: float = 0.1, test: float = 0.1) -> list[str]:
    """Split name per item; items of one group always share a side.

    Each group's hash gives it a point in [0, 1): below `test` is test, then `val`, then train.
    A corpus too small to land any group on the validation side still gets one (the group
    with the smallest point among train), so validation never comes out empty.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise MpxError(f"split fractions must be in [0, 1) and sum below 1, got val={val}, test={test}")
    unique = sorted(set(groups), key=_unit)
    side = {}
    for g in unique:
        u = _unit(g)
        side[g] = "test" if u < test else "val" if u < test + val else "train"
    trains = [g for g in unique if side[g] == "train"]
    if val > 0 and "val" not in side.values() and len(trains) >= 2:
        side[trains[0]] = "val"
    return [side[g] for g in groups]
