"""Train / validation / test split by piece, never by chance per file, decided before parsing.

The metadata of DATA (train/layout.py) gives each file a piece and, for MAESTRO, its side of
the official split. Files without a side go by a hash of their group: the piece where the
metadata names one (every performance of a piece on one side), else the file's content (a file
copied under two names still lands on one side). The hash is stable when files are added or
removed. None of this needs the notes, so a command that scores one split parses only that
split's files.

A corpus too small for a split by files (no file on the training or the validation side)
validates on the last TAIL of the notes of each file instead: `mpx train my_song.mid` trains.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

from mpx.runtime.errors import MpxError

SPLITS = ("train", "val", "test")
TAIL = 0.1  # share of each file's predictions that validate when the corpus is too small to split


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a metadata file says about DATA's files (train/layout.py reads it)."""

    source: Path | None = None                                         # the metadata file
    kind: str = "files"                                                # "maestro", "pieces" or "files"
    pieces: dict[Path, str] = dataclasses.field(default_factory=dict)  # resolved file -> piece key
    splits: dict[Path, str] = dataclasses.field(default_factory=dict)  # resolved file -> its side
    missing: int = 0                                                   # files named but not there

    def merged(self, other: "Layout") -> "Layout":
        return Layout(self.source or other.source, self.kind if self.source else other.kind,
                      {**other.pieces, **self.pieces}, {**other.splits, **self.splits},
                      self.missing + other.missing)


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def assign(groups: Sequence[str], val: float = 0.1, test: float = 0.1) -> list[str]:
    """Split name per item; items of one group always share a side.

    Each group's hash gives it a point in [0, 1): below `test` is test, then `val`, then train.
    A corpus too small to land any group on the validation side still gets one (the group
    with the smallest point among train), so validation never comes out empty.
    """
    check_fractions(val, test)
    unique = sorted(set(groups), key=_unit)
    side = {}
    for g in unique:
        u = _unit(g)
        side[g] = "test" if u < test else "val" if u < test + val else "train"
    trains = [g for g in unique if side[g] == "train"]
    if val > 0 and "val" not in side.values() and len(trains) >= 2:
        side[trains[0]] = "val"
    return [side[g] for g in groups]


def check_fractions(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise MpxError(f"split fractions must be in [0, 1) and sum below 1, got val={val}, test={test}")


def decide(groups: Sequence[str], fixed: Sequence[str | None], val: float = 0.1,
           test: float = 0.1) -> list[str]:
    """The side of every file: its `fixed` side where the metadata gives one, else by group hash."""
    free = [i for i, side in enumerate(fixed) if side is None]
    hashed = assign([groups[i] for i in free], val=val, test=test)
    sides = [side or "" for side in fixed]
    for i, side in zip(free, hashed):
        sides[i] = side
    return sides


def tail_predictions(notes: int) -> int:
    """How many of a file's last predictions validate in the small-corpus split (0: too short)."""
    predictions = notes - 1
    return math.ceil(TAIL * predictions) if predictions >= 2 else 0
