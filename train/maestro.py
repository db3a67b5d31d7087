"""MAESTRO's metadata: maestro-v*.csv (or .json) at the top of the dataset's folder.

Each row names a performance (`midi_filename`, relative to the file), its piece
(`canonical_composer`, `canonical_title`) and its side of the official split (`split`: train,
validation or test). mpx uses that split as it is, so numbers are comparable with published
ones, and the piece as the group of the file. Rows whose file is missing are left out, counted
and said in one line; a file with no `split` column is split by piece instead (said too).
The JSON form comes in two shapes: a list of rows (v1, v2) or one mapping per column (v3).
"""
from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

from mpx.runtime.errors import MpxError

from .split import Layout

log = logging.getLogger(__name__)

NAME = re.compile(r"^maestro-v(\d+(?:\.\d+)*)\.(csv|json)$", re.IGNORECASE)
SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "test": "test"}
PIECE = ("canonical_composer", "canonical_title")


def find(root: Path) -> Path | None:
    """The newest maestro-v*.csv (preferred) or .json directly inside `root`, if any."""
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        match = NAME.match(path.name)
        if match and path.is_file():
            version = tuple(int(p) for p in match.group(1).split("."))
            found.append((version, match.group(2).lower() == "csv", path))
    return max(found)[2] if found else None


def is_maestro(path: Path) -> bool:
    """A metadata file given with --metadata is MAESTRO's when it is named like it or is JSON."""
    return bool(NAME.match(path.name)) or path.suffix.lower() == ".json"


def read(path: Path) -> Layout:
    """The layout of a MAESTRO folder from its metadata file; MpxError naming the file when it
    cannot be used."""
    rows = _rows(path)
    if not rows:
        raise MpxError(f"{path}: holds no rows")
    columns = set(rows[0])
    if "midi_filename" not in columns:
        raise MpxError(f"{path}: MAESTRO metadata needs a midi_filename column "
                       f"(it has {', '.join(sorted(columns)) or 'none'})")
    has_split, has_piece = "split" in columns, set(PIECE) <= columns
    if not has_split:
        log.warning("%s has no split column: splitting by %s instead (10%% validation, 10%% test)",
                    path.name, "piece (canonical_composer, canonical_title)" if has_piece else "file")
    pieces: dict[Path, str] = {}
    splits: dict[Path, str] = {}
    missing: list[str] = []
    for line, row in enumerate(rows, start=2):
        name = str(row.get("midi_filename") or "")
        file = path.parent / name
        if not name or not file.is_file():
            missing.append(name)
            continue
        resolved = file.resolve()
        if has_piece:
            pieces[resolved] = f"{row['canonical_composer']}/{row['canonical_title']}"
        if has_split:
            splits[resolved] = _split_name(row.get("split"), path, line)
    if missing:
        log.warning("%s names %d files that are not there (first: %s): left out",
                    path.name, len(missing), missing[0] or "an empty midi_filename")
    return Layout(source=path, kind="maestro", pieces=pieces, splits=splits, missing=len(missing))


def _split_name(value: Any, path: Path, line: int) -> str:
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise MpxError(f"{path}: row {line}: split {value!r} is not one of train, validation, test")
    return name


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".json":
            return _json_rows(json.loads(path.read_text()), path)
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise MpxError(f"{path}: cannot read MAESTRO metadata ({exc})") from None


def _json_rows(raw: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(raw, list) and all(isinstance(r, dict) for r in raw):
        return raw  # v1, v2: a list of rows
    if isinstance(raw, dict) and all(isinstance(c, dict) for c in raw.values()):
        index = sorted({i for column in raw.values() for i in column}, key=_index_order)
        return [{name: column.get(i) for name, column in raw.items()} for i in index]  # v3: columns
    raise MpxError(f"{path}: expected a list of rows or a mapping per column")


def _index_order(key: str) -> tuple[int, str]:
    return (int(key), "") if str(key).isdigit() else (1 << 62, str(key))
