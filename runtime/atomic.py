"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import MpxError


def _file_mode() -> int:
    """The mode open() would give a new file (mkstemp's is 0600, too private for outputs)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()

def _temp_beside(target: Path, suffix: str = ".tmp") -> Path:
    directory = target.parent
    if not directory.is_dir():
        raise MpxError(f"{directory}: output directory does not exist")
    if target.is_dir():
        raise MpxError(f"{target}: is a directory, expected a file path")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=directory)
    except OSError as exc:
        raise MpxError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the target's directory so the final rename stays on one file
    system (os.replace is atomic there). On any exception, KeyboardInterrupt included, the
    temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    tmp = _temp_beside(target, suffix)  # a writer that insists on its own suffix gets it (.tmp.pt2)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)  # after the writer: some writers replace the file they are given
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_writable(target: str | os.PathLike[str]) -> None:
    """Fail early, before expensive work, when `target` could not be written; leaves nothing."""
    _temp_beside(Path(target)).unlink()
