"""The corpus: MIDI files -> notes, split first, then parsed in parallel, cached and packed.

Inputs may be files, directories (searched recursively for .mid/.midi) or glob patterns such
as the tutorial's 'maestro-v2.0.0/*/*.midi'. The split is decided before any file is parsed
(train/split.py: metadata needs nothing, a hash of the content needs only the bytes), so a
command that scores the test split parses the test split only, and training never parses it.
The notes of the chosen files end up in one memory-mapped pack (train/cache.py): a corpus is
an index into it, not an array per file in each process. Bad files are skipped with a warning
naming each and counted; one bad file never stops a run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import gc
import glob
import logging
import os
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mpx.runtime.checks import integer
from mpx.runtime.errors import MidiError, MpxError, OptionsError
from mpx.runtime.midi import read_notes

from .cache import NoteCache, Pack, content_key
from .layout import find_layout
from .split import SPLITS, TAIL, check_fractions, decide, tail_predictions

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
HOLDOUTS = ("split", "tail")


@dataclasses.dataclass
class Corpus:
    """Files and where their notes lie in `store` ([N, 4] float32, usually memory-mapped).

    holdout "split": each file is on one side (`splits`); "tail": too few files for that, so
    every file trains on its notes but the last TAIL, which validate (`select` cuts them).
    """

    files: list[Path]
    keys: list[str]        # content hash per file
    groups: list[str]      # piece key (metadata) or content key: the unit of the split
    splits: list[str]      # "train" / "val" / "test" per file
    starts: np.ndarray     # [F] int64: first note of each file in store
    lengths: np.ndarray    # [F] int64: notes of each file
    store: np.ndarray      # [N, 4] float32
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    parsed: int = 0        # files parsed this run (0 when the cache served everything)
    holdout: str = "split"
    sides: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # every file of DATA

    @property
    def notes(self) -> list[np.ndarray]:
        """Each file's notes: views into the store, nothing copied."""
        return [self.store[s:s + n] for s, n in zip(self.starts, self.lengths)]

    @property
    def note_count(self) -> int:
        return int(self.lengths.sum())

    def select(self, split: str) -> "Corpus":
        """The files of one split ("train", "val", "test"), or every file for "all"."""
        if split not in (*SPLITS, "all"):
            raise OptionsError(f"--split must be one of {', '.join(SPLITS)} or all, got {split!r}")
        if split == "all":
            return dataclasses.replace(self, holdout="split") if self.holdout == "split" else self._whole()
        if self.holdout == "tail":
            return self._tail_side(split)
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return self._subset(keep)

    def _subset(self, keep: list[int], starts: np.ndarray | None = None,
                lengths: np.ndarray | None = None, split: str | None = None) -> "Corpus":
        index = np.asarray(keep, np.int64)
        return dataclasses.replace(
            self, files=[self.files[i] for i in keep], keys=[self.keys[i] for i in keep],
            groups=[self.groups[i] for i in keep],
            splits=[split or self.splits[i] for i in keep],
            starts=self.starts[index] if starts is None else starts,
            lengths=self.lengths[index] if lengths is None else lengths, holdout="split")

    def _whole(self) -> "Corpus":
        return self._subset(list(range(len(self.files))), split="train")

    def _tail_side(self, split: str) -> "Corpus":
        """Training: each file but its last predictions; validation: those (and the note before
        the first of them, its input). No note is a target on both sides."""
        tails = np.array([tail_predictions(int(n)) for n in self.lengths], np.int64)
        if split == "train":
            return self._subset(list(range(len(self.files))), lengths=self.lengths - tails, split="train")
        if split == "val":
            keep = [i for i, t in enumerate(tails) if t > 0]
            heads = self.lengths[keep] - tails[keep]
            return self._subset(keep, starts=self.starts[keep] + heads - 1, lengths=tails[keep] + 1, split="val")
        return self._subset([])

    def summary(self) -> dict[str, object]:
        """Files, notes and groups per side (notes only where the side was loaded)."""
        per_split = {}
        for side in SPLITS:
            chosen = self.select(side)
            loaded = bool(chosen.files) or side in _loaded_sides(self)
            per_split[side] = {"files": len(chosen.files) if loaded else self.sides.get(side, {}).get("files", 0),
                               "notes": chosen.note_count if loaded else None,
                               "groups": len(set(chosen.groups)) if loaded else self.sides.get(side, {}).get("groups", 0)}
        return {"files": len(self.files), "notes": self.note_count, "skipped": len(self.skipped),
                "holdout": self.holdout, "splits": per_split}


def _loaded_sides(corpus: Corpus) -> set[str]:
    return {"train", "val"} if corpus.holdout == "tail" else set(corpus.splits)


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


@dataclasses.dataclass
class _Plan:
    """Every file of DATA with its key (when read), group and side, before any parsing."""

    files: list[Path]
    keys: list[str | None]
    unreadable: dict[int, str]
    groups: list[str]
    sides: list[str]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {"files": self.sides.count(s),
                    "groups": len({g for g, t in zip(self.groups, self.sides) if t == s})} for s in SPLITS}


def load_corpus(inputs: Sequence[str | os.PathLike[str]], *, max_files: int | None = None,
                cache: NoteCache | None = None, workers: int | None = None,
                metadata: str | os.PathLike[str] | None = None, val: float = 0.1,
                test: float = 0.1, splits: Sequence[str] | None = None,
                on_parsed: Callable[[int, int], None] | None = None, pedal: bool = False) -> Corpus:
    """Load the MIDI files of `inputs` (at most max_files, in sorted order) that lie on the
    `splits` asked for (None: every side), split as DATA's metadata or their content says.
    pedal=True: sounding durations (the sustain pedal, runtime/pedal.py), cached apart from
    key-down ones; the split is the same either way."""
    _check(max_files, workers, splits)
    check_fractions(val, test)
    files = find_midi_files(inputs)[:max_files]
    if not files:
        raise MpxError(f"no MIDI files (.mid, .midi) found in {', '.join(map(str, inputs))}")
    plan = _plan(files, find_layout(inputs, metadata), val, test, pedal)
    asked = set(splits or SPLITS)
    wanted = asked
    tail = bool(asked & {"train", "val"}) and not {"train", "val"} <= set(plan.sides)
    if tail:
        wanted = set(SPLITS)  # too few files to split: every file trains and validates (tail)
    chosen = [i for i, side in enumerate(plan.sides) if side in wanted]
    if not chosen:  # not "none of the 0 files could be read": they were not asked for
        sides = ", ".join(f"{n} {side}" for side, n in sorted(Counter(plan.sides).items()))
        raise MpxError(f"none of the {len(files)} MIDI files is on the {' or '.join(sorted(asked))} side of the "
                       f"split ({sides}); --split all takes every file")
    for i in chosen:
        if plan.keys[i] is None:
            plan.keys[i], reason = _key_of(files[i], pedal)
            if reason:
                plan.unreadable[i] = reason
    readable = [i for i in chosen if i not in plan.unreadable]
    cache = cache or NoteCache()
    pack, parsed = _packed([plan.keys[i] for i in readable], files, readable, cache, workers,  # type: ignore[misc]
                           on_parsed, pedal) if readable else (None, 0)
    corpus = _corpus(plan, chosen, pack, parsed)
    # training also needs both sides when the files of one could not be read
    if tail or ({"train", "val"} <= asked and not {"train", "val"} <= set(corpus.splits)):
        corpus.holdout = "tail"
        # said to whoever asked for the training sides (`mpx train`), not to `mpx eval` of every file
        log.log(logging.WARNING if splits is not None else logging.INFO,
                "validation: the last %d%% of the notes of each of the %d files (too few files to split "
                "by piece)", round(TAIL * 100), len(corpus.files))
    return corpus


def _check(max_files: int | None, workers: int | None, splits: Sequence[str] | None) -> None:
    if max_files is not None:
        integer("max_files", max_files, 1)
    if workers is not None:
        integer("workers", workers, 1, 256)
    unknown = sorted(set(splits or ()) - set(SPLITS))
    if unknown:
        raise OptionsError(f"splits must be among {', '.join(SPLITS)}, got {', '.join(unknown)}")


def _key_of(path: Path, pedal: bool = False) -> tuple[str, str]:
    """(content key, "") or ("", why the file cannot be read)."""
    key, _, reason = _read_keys(path, pedal)
    return key, reason


def _read_keys(path: Path, pedal: bool = False) -> tuple[str, str, str]:
    """(cache key, split group, "") or ("", "", why the file cannot be read). The group is the
    bytes' hash alone: a new notes codec renews the cache, never a file's side of the split."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", "", f"cannot read ({exc.strerror or exc})"
    return content_key(data, pedal), "content:" + hashlib.sha256(data).hexdigest(), ""


def _plan(files: list[Path], layout, val: float, test: float, pedal: bool = False) -> _Plan:  # type: ignore[no-untyped-def]
    """Group and side of every file. Only files the metadata does not place are read (to hash
    their content); nothing is parsed."""
    resolved = [f.resolve() for f in files]
    keys: list[str | None] = [None] * len(files)
    unreadable: dict[int, str] = {}
    groups = []
    for i, (path, real) in enumerate(zip(files, resolved)):
        piece = layout.pieces.get(real)
        if piece is None:
            keys[i], content, reason = _read_keys(path, pedal)
            if reason:
                unreadable[i] = reason
            piece = content or str(path)
        groups.append(piece)
    sides = decide(groups, [layout.splits.get(r) for r in resolved], val=val, test=test)
    return _Plan(files, keys, unreadable, groups, sides)


def _packed(keys: list[str], files: list[Path], index: list[int], cache: NoteCache,
            workers: int | None, on_parsed: Callable[[int, int], None] | None,
            pedal: bool = False) -> tuple[Pack, int]:
    """The pack of `keys` (file index[i] has keys[i]): opened if it exists, else built from the
    cache entries and a parse of the misses, under a lock so concurrent ranks do it once."""
    unique = list(dict.fromkeys(keys))
    pack = cache.open_pack(unique)
    if pack is not None:
        return pack, 0
    with cache.lock(unique):
        pack = cache.open_pack(unique)  # another process may have built it while we waited
        if pack is not None:
            return pack, 0
        first = {key: files[i] for key, i in reversed(list(zip(keys, index)))}
        lengths, reasons, held, parsed = _entries(unique, [first[k] for k in unique], cache, workers, on_parsed,
                                                  pedal)
        if cache.damaged:
            log.warning("notes cache: %d damaged or outdated entries; parsed those files again", cache.damaged)

        def value(i: int) -> np.ndarray:
            notes = held.get(i)
            if notes is None:
                notes = cache.get(unique[i])
            if not isinstance(notes, np.ndarray) or len(notes) != lengths[i]:
                raise MpxError(f"notes cache {cache.dir}: an entry changed while the corpus was packed; run again")
            return notes

        return cache.write_pack(unique, lengths, reasons, value), parsed


def _entries(keys: list[str], files: list[Path], cache: NoteCache, workers: int | None,
             on_parsed: Callable[[int, int], None] | None, pedal: bool = False
             ) -> tuple[np.ndarray, dict[int, str], dict[int, np.ndarray], int]:
    """Notes count or skip reason of every key, parsing the misses. Notes are not kept (the pack
    reads them back one at a time) unless the cache could not store them."""
    lengths = np.zeros(len(keys), np.int64)
    reasons: dict[int, str] = {}
    held: dict[int, np.ndarray] = {}

    def record(i: int, value: np.ndarray | str, stored: bool) -> None:
        if isinstance(value, str):
            reasons[i] = value
        else:
            lengths[i] = len(value)
            if not stored:
                held[i] = value

    misses = []
    for i, key in enumerate(keys):
        value = cache.get(key)
        if value is None:
            misses.append(i)
        else:
            record(i, value, stored=True)
    for done, (i, value) in enumerate(_parse_all([files[i] for i in misses], misses, workers, pedal), start=1):
        record(i, value, stored=cache.put(keys[i], value))
        if on_parsed:
            on_parsed(done, len(misses))
    return lengths, reasons, held, len(misses)


def _parse(path: str, pedal: bool = False) -> np.ndarray | str:
    """Worker: one file -> notes, or the reason it was skipped."""
    try:
        return read_notes(path, pedal=pedal)
    except MidiError as exc:
        return exc.reason


def _ignore_ctrl_c() -> None:
    """In a parsing worker: Ctrl-C reaches the whole process group, and the parent stops the
    pool; a worker's own KeyboardInterrupt would print a traceback from every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parse_all(files: list[Path], index: list[int], workers: int | None,  # type: ignore[no-untyped-def]
               pedal: bool = False):
    """(index, notes or reason) for every file, in order, parsed in `workers` processes."""
    workers = workers or os.cpu_count() or 1
    paths = [str(f) for f in files]
    if workers == 1 or len(paths) < 4:
        yield from zip(index, (_parse(p, pedal) for p in paths))
        return
    # Garbage goes before the fork: a cycle that holds an onnxruntime session (a model that
    # failed to open, kept by its traceback), collected in a worker, would wait forever there
    # for the parent's threads.
    gc.collect()
    executor = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_ctrl_c)
    try:
        yield from zip(index, executor.map(_parse, paths, [pedal] * len(paths), chunksize=max(1, len(paths) // (workers * 8))))
    finally:
        executor.shutdown(cancel_futures=True)


def _corpus(plan: _Plan, chosen: list[int], pack: Pack | None, parsed: int) -> Corpus:
    """The chosen files that could be read (bad ones skipped, each named, and counted) over
    the pack's store."""
    where = {key: j for j, key in enumerate(pack.keys)} if pack else {}
    kept: list[tuple[int, int]] = []
    skipped: list[tuple[str, str]] = []
    for i in chosen:
        j = where.get(plan.keys[i], -1)  # type: ignore[arg-type]
        reason = plan.unreadable.get(i) or (pack.reasons.get(j) if pack else None)
        if reason:
            skipped.append((str(plan.files[i]), reason))
        else:
            kept.append((i, j))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if skipped:
        log.warning("skipped %d of %d files", len(skipped), len(chosen))
    if not kept or pack is None:
        raise MpxError(f"none of the {len(chosen)} MIDI files could be read")
    rows = [j for _, j in kept]
    return Corpus(files=[plan.files[i] for i, _ in kept], keys=[plan.keys[i] for i, _ in kept],  # type: ignore[misc]
                  groups=[plan.groups[i] for i, _ in kept], splits=[plan.sides[i] for i, _ in kept],
                  starts=pack.starts[rows], lengths=pack.lengths[rows], store=pack.store,
                  skipped=skipped, parsed=parsed, sides=plan.counts())
