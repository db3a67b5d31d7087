"""The corpus: MIDI files -> notes arrays, parsed in parallel, cached, split by piece.

Inputs may be files, directories (searched recursively for .mid/.midi) or glob patterns such
as the tutorial's 'maestro-v2.0.0/*/*.midi'. Bad files are skipped with a warning naming each
and counted; one bad file never stops a run.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mpx.runtime.errors import MidiError, MpxError, OptionsError
from mpx.runtime.midi import read_notes

from .cache import NoteCache, content_key
from .split import SPLITS, assign, find_metadata, read_piece_metadata

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")


@dataclasses.dataclass
class Corpus:
    files: list[Path]
    notes: list[np.ndarray]
    keys: list[str]        # content hash per file
    groups: list[str]      # piece key (metadata) or content key: the unit of the split
    splits: list[str]      # "train" / "val" / "test" per file
    skipped: list[tuple[str, str]]  # (file, reason)
    parsed: int = 0        # files parsed this run (0 when the cache served everything)

    def select(self, split: str) -> "Corpus":
        """The files of one split ("train", "val", "test"), or every file for "all"."""
        if split not in (*SPLITS, "all"):
            raise OptionsError(f"--split must be one of {', '.join(SPLITS)} or all, got {split!r}")
        if split == "all":
            return self
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return dataclasses.replace(
            self, files=[self.files[i] for i in keep], notes=[self.notes[i] for i in keep],
            keys=[self.keys[i] for i in keep],
            groups=[self.groups[i] for i in keep], splits=[self.splits[i] for i in keep])

    @property
    def note_count(self) -> int:
        return int(sum(len(n) for n in self.notes))

    def summary(self) -> dict[str, object]:
        per_split = {s: {"files": self.splits.count(s),
                         "notes": int(sum(len(n) for n, t in zip(self.notes, self.splits) if t == s)),
                         "groups": len({g for g, t in zip(self.groups, self.splits) if t == s})}
                     for s in SPLITS}
        return {"files": len(self.files), "notes": self.note_count, "skipped": len(self.skipped),
                "splits": per_split}


def find_midi_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated file list."""
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()]
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(str(item)):
            matches = [Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file()]
            if not matches:
                raise MpxError(f"{item}: pattern matches no files")
        else:
            raise MpxError(f"{item}: no such file, directory or pattern")
        for match in sorted(matches):
            found.setdefault(match, None)
    return list(found)


def _parse(path: str) -> np.ndarray | str:
    """Worker: one file -> notes, or the reason it was skipped."""
    try:
        return read_notes(path)
    except MidiError as exc:
        return exc.reason


def load_corpus(inputs: Sequence[str | os.PathLike[str]], *, max_files: int | None = None,
                cache: NoteCache | None = None, workers: int | None = None,
                metadata: str | os.PathLike[str] | None = None, val: float = 0.1,
                test: float = 0.1, on_parsed: Callable[[int, int], None] | None = None) -> Corpus:
    """Load every MIDI file of `inputs` (at most max_files, in sorted order) and split it."""
    if max_files is not None and (not isinstance(max_files, int) or max_files < 1):
        raise OptionsError(f"--max-files must be >= 1, got {max_files!r}")
    if workers is not None and (not isinstance(workers, int) or not 1 <= workers <= 256):
        raise OptionsError(f"--workers must be 1..256, got {workers!r}")
    files = find_midi_files(inputs)
    if max_files is not None:
        files = files[:max_files]
    if not files:
        raise MpxError(f"no MIDI files (.mid, .midi) found in {', '.join(map(str, inputs))}")
    cache = cache or NoteCache()
    keys, results = _read_cached(files, cache)
    misses = [i for i, r in enumerate(results) if r is None]
    if misses:
        _parse_missing(files, keys, results, misses, cache, workers, on_parsed)

    meta_path = Path(metadata) if metadata else find_metadata([str(i) for i in inputs])
    pieces = read_piece_metadata(meta_path) if meta_path else {}
    kept_files, kept_notes, kept_keys, groups, skipped = [], [], [], [], []
    for path, key, result in zip(files, keys, results):
        if isinstance(result, str):
            log.warning("skipped %s: %s", path, result)
            skipped.append((str(path), result))
            continue
        kept_files.append(path)
        kept_notes.append(result)
        kept_keys.append(key)
        groups.append(pieces.get(path.resolve(), key))
    if skipped:
        log.warning("skipped %d of %d files", len(skipped), len(files))
    if not kept_files:
        raise MpxError(f"none of the {len(files)} MIDI files could be read")
    return Corpus(files=kept_files, notes=kept_notes, keys=kept_keys, groups=groups,
                  splits=assign(groups, val=val, test=test), skipped=skipped, parsed=len(misses))


def _read_cached(files: list[Path], cache: NoteCache) -> tuple[list[str], list[np.ndarray | str | None]]:
    keys, results = [], []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            keys.append("")
            results.append(f"cannot read ({exc.strerror or exc})")
            continue
        key = content_key(data)
        keys.append(key)
        results.append(cache.get(key))
    return keys, results


def _parse_missing(files: list[Path], keys: list[str], results: list[np.ndarray | str | None],
                   misses: list[int], cache: NoteCache, workers: int | None,
                   on_parsed: Callable[[int, int], None] | None) -> None:
    workers = workers or os.cpu_count() or 1
    paths = [str(files[i]) for i in misses]
    if workers == 1 or len(misses) < 4:
        parsed = map(_parse, paths)
        executor = None
    else:
        executor = ProcessPoolExecutor(max_workers=workers)
        parsed = executor.map(_parse, paths, chunksize=max(1, len(paths) // (workers * 8)))
    try:
        for done, (index, result) in enumerate(zip(misses, parsed), start=1):
            results[index] = result
            cache.put(keys[index], result)
            if on_parsed:
                on_parsed(done, len(misses))
    finally:
        if executor:
            executor.shutdown(cancel_futures=True)
