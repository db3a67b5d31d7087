"""On-disk cache of parsed notes, keyed by file content: a second run parses no MIDI.

One .npy per file content (sha256), plus .err for files that failed, so bad files are not
parsed again either. The key includes the codec version: a codec change invalidates it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mpx.runtime.atomic import atomic_path

CODEC_VERSION = "notes-v2"  # v2: velocity is the fourth column


def default_dir() -> Path:
    if os.environ.get("MPX_CACHE_DIR"):
        return Path(os.environ["MPX_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mpx" / "notes"


def content_key(data: bytes) -> str:
    return hashlib.sha256(CODEC_VERSION.encode() + b"\0" + data).hexdigest()


class NoteCache:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory) if directory else default_dir()

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached notes, the cached error reason, or None when the file was never parsed."""
        npy = self._path(key, ".npy")
        try:
            return np.load(npy, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            pass  # a torn or missing entry is a miss: it gets parsed again
        try:
            return self._path(key, ".err").read_text()
        except OSError:
            return None

    def put(self, key: str, value: np.ndarray | str) -> None:
        suffix = ".err" if isinstance(value, str) else ".npy"
        path = self._path(key, suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                if isinstance(value, str):
                    tmp.write_text(value)
                else:
                    with open(tmp, "wb") as fh:
                        np.save(fh, value, allow_pickle=False)
        except OSError:
            pass  # a read-only cache only costs speed
