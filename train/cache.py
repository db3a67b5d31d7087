"""On-disk cache of parsed notes, keyed by file content: a second run parses no MIDI.

Two kinds of files, both in the checked format of train/notefile.py:
- an entry per file content (sha256): its notes, or the reason it could not be read, so bad
  files are not parsed again either;
- a pack per corpus selection: the notes of many files end to end, which training memory-maps
  instead of holding the corpus in each process (N ranks on one machine share its pages).
  A pack is keyed by the ordered content keys it holds; a warm start opens it and reads no entry.
Nothing read from the cache is trusted unchecked: a damaged or stale entry (0 bytes, cut short,
flipped bytes, another codec or parser version, impossible notes) counts as a miss and the file
is parsed again; a damaged pack is rebuilt. A read-only cache only costs speed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mpx.runtime.atomic import atomic_path
from mpx.runtime.errors import MpxError

from . import notefile
from .notefile import CODEC_VERSION, Damaged

log = logging.getLogger(__name__)

SUFFIX = ".notes"
KEEP_PACKS = 8  # packs not used recently are removed beyond this many (each is a corpus' size)


def default_dir() -> Path:
    if os.environ.get("MPX_CACHE_DIR"):
        return Path(os.environ["MPX_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mpx" / "notes"


def content_key(data: bytes, pedal: bool = False) -> str:
    """A file's key: its content (so a copy under another name is one file) and the codec, with
    the durations it reads (pedal=True: sounding, runtime/pedal.py), so key-down and sounding
    notes of one file are two entries and never mix in a pack."""
    codec = CODEC_VERSION + ("+pedal" if pedal else "")
    return hashlib.sha256(codec.encode() + b"\0" + data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Pack:
    """The notes of `keys`, end to end in `store` (memory-mapped when it comes from disk)."""

    keys: tuple[str, ...]
    starts: np.ndarray           # [K] int64: first note of each key in store
    lengths: np.ndarray          # [K] int64: notes of each key; 0 for a file that could not be read
    reasons: dict[int, str]      # key index -> why its file could not be read
    store: np.ndarray            # [N, 4] float32
    path: Path | None = None     # None: held in memory (the cache could not be written)


class NoteCache:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory) if directory else default_dir()
        self.damaged = 0  # entries found damaged or stale this session (each parsed again)

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}{SUFFIX}"

    # -- entries ---------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | str | None:
        """The cached notes, the cached error reason, or None: never parsed, or damaged."""
        path = self._path(key)
        try:
            header, notes = notefile.read(path)
            if header.get("kind") == "error" and isinstance(header.get("reason"), str) and header["reason"]:
                return header["reason"]
            if header.get("kind") != "notes":
                raise Damaged(f"kind {header.get('kind')!r} is not an entry")
            return notes
        except FileNotFoundError:
            return None
        except (Damaged, OSError) as exc:
            self.damaged += 1
            log.debug("cache entry %s is damaged (%s): parsing the file again", path, exc)
            return None

    def put(self, key: str, value: np.ndarray | str) -> bool:
        """Store one file's notes or error reason; False when the cache cannot be written."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                if isinstance(value, str):
                    notefile.write(tmp, "error", np.zeros((0, 4), np.float32), reason=value)
                else:
                    notefile.write(tmp, "notes", value)
            return True
        except (OSError, MpxError) as exc:  # atomic_path says MpxError for an unwritable folder
            log.debug("cannot write cache entry %s: %s", path, exc)
            return False

    # -- packs -----------------------------------------------------------------------------
    @staticmethod
    def pack_key(keys: Sequence[str]) -> str:
        text = "\n".join([CODEC_VERSION, notefile.parser_version(), *keys])
        return hashlib.sha256(text.encode()).hexdigest()

    def _pack_path(self, keys: Sequence[str]) -> Path:
        return self.dir / "packs" / f"{self.pack_key(keys)}{SUFFIX}"

    def open_pack(self, keys: Sequence[str]) -> Pack | None:
        """The pack of exactly these keys, checked and memory-mapped; None if there is none."""
        path = self._pack_path(keys)
        try:
            header, store = notefile.open_mapped(path)
            pack = _pack_of(header, store, path)
        except FileNotFoundError:
            return None
        except (Damaged, OSError, ValueError) as exc:
            log.warning("notes cache: pack %s is damaged (%s); rebuilding it", path.name, exc)
            return None
        if pack.keys != tuple(keys):
            log.warning("notes cache: pack %s holds other files; rebuilding it", path.name)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept by _prune
        return pack

    def write_pack(self, keys: Sequence[str], lengths: np.ndarray, reasons: dict[int, str],
                   value: Callable[[int], np.ndarray]) -> Pack:
        """The pack of `keys`: `lengths` notes each (0 and a reason for a file that could not be
        read), the notes of key i from `value(i)`. Streamed to disk one file at a time and
        memory-mapped; held in memory instead when the cache cannot be written."""
        lengths = np.asarray(lengths, np.int64)
        if self._writable():
            try:
                return self._write_pack_file(keys, lengths, reasons, value)
            except (OSError, MpxError, ValueError, Damaged) as exc:
                log.info("notes cache: cannot write a pack (%s); holding the notes in memory", exc)
        arrays = [value(i) for i in range(len(keys)) if lengths[i]]
        store = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros((0, 4), np.float32)
        return Pack(tuple(keys), _starts(lengths), lengths, dict(reasons), store)

    def _write_pack_file(self, keys: Sequence[str], lengths: np.ndarray, reasons: dict[int, str],
                         value: Callable[[int], np.ndarray]) -> Pack:
        path = self._pack_path(keys)
        parts = (value(i) for i in range(len(keys)) if lengths[i])
        with atomic_path(path) as tmp:
            notefile.write_stream(tmp, "pack", parts, int(lengths.sum()), keys=list(keys),
                                  lengths=lengths.tolist(), reasons={str(i): r for i, r in reasons.items()})
        self._prune(keep=path)
        pack = self.open_pack(keys)
        if pack is None:
            raise Damaged("the pack just written does not read back")
        return pack

    def _writable(self) -> bool:
        try:
            (self.dir / "packs").mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.dir / "packs", os.W_OK)

    def _prune(self, keep: Path) -> None:
        """Remove the least recently used packs beyond KEEP_PACKS. A process that has one
        mapped keeps reading it: the pages live until it unmaps them."""
        packs = sorted((self.dir / "packs").glob(f"*{SUFFIX}"), key=_mtime, reverse=True)
        for old in [p for p in packs if p != keep][KEEP_PACKS - 1:]:
            with contextlib.suppress(OSError):
                old.unlink()

    @contextlib.contextmanager
    def lock(self, keys: Sequence[str]) -> Iterator[None]:
        """Hold the lock of one pack: processes loading the same corpus at once (the ranks of a
        torchrun) parse and pack it once; the others wait, then find it done. No lock (and no
        wait) where the cache cannot be written."""
        path = self.dir / "packs" / f"{self.pack_key(keys)}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+b")
        except OSError:
            yield
            return
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("waiting for another mpx process that is parsing the same files (%s)", path)
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        finally:
            fh.close()  # closing releases the lock


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths


def _pack_of(header: dict, store: np.ndarray, path: Path) -> Pack:
    keys, lengths = header.get("keys"), header.get("lengths")
    reasons = header.get("reasons", {})
    if header.get("kind") != "pack" or not isinstance(keys, list) or not isinstance(lengths, list) \
            or len(keys) != len(lengths) or not isinstance(reasons, dict):
        raise Damaged("not a pack header")
    lengths = np.asarray(lengths, np.int64)
    if (lengths < 0).any() or int(lengths.sum()) != len(store):
        raise Damaged("file lengths do not add up to the notes it holds")
    return Pack(tuple(keys), _starts(lengths), lengths, {int(i): str(r) for i, r in reasons.items()},
                store, path)
