"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

Temporaries carry mpx's own naming, `.NAME.mpx-PID-RANDOM.tmp` beside the target, so that the
leftovers of a process killed mid-write (kill -9, power loss: no `finally` runs) are known as
such and removed by the next write into the same folder, once their process is gone. A failed
write (disk full, read-only folder, quota) ends as one MpxError naming the target, never as an
OSError traceback, and leaves the target as it was.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from .errors import MpxError

log = logging.getLogger(__name__)

_TEMP = re.compile(r"^\..+\.mpx-(\d+)-[0-9a-f]+\.tmp$")  # this module's naming, and only it


def _file_mode() -> int:
    """The mode open() would give a new file (mkstemp's is 0600, too private for outputs)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


class WriteError(MpxError):
    """An output that could not be written (disk full, permissions, no such folder)."""


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write here ({exc.strerror})"
    return exc.strerror or str(exc)


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.mpx-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale(directory: Path) -> list[Path]:
    """Remove the temporaries (files or staging folders) that mpx processes no longer running
    left in `directory`; returns what was removed. Other processes' live temporaries stay."""
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                for child in entry.iterdir():
                    child.unlink()
                entry.rmdir()
            else:
                entry.unlink()
        except OSError:
            continue  # someone else's, or already gone: not ours to insist on
        log.info("removed %s, left by an interrupted mpx process", entry)
        removed.append(entry)
    return removed


def _temp_beside(target: Path) -> Path:
    directory = target.parent
    if not directory.is_dir():
        raise WriteError(f"{directory}: output directory does not exist")
    if target.is_dir():
        raise WriteError(f"{target}: is a directory, expected a file path")
    clean_stale(directory)
    tmp = temp_name(target)
    try:
        with open(tmp, "xb"):
            pass
    except OSError as exc:
        raise WriteError(f"{target}: {_reason(exc)}") from None
    return tmp


def _commit(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as fh:  # on disk before the rename makes it visible
        os.fsync(fh.fileno())
    os.chmod(tmp, _MODE)  # after the writer: some writers replace the file they are given
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the target's directory so the final rename stays on one file
    system (os.replace is atomic there). On any exception, KeyboardInterrupt included, the
    temporary file is removed and `target` is left as it was; an OSError (the writer's or the
    rename's) becomes a WriteError naming `target`.
    """
    target = Path(target)
    tmp = _temp_beside(target)
    try:
        yield tmp
        _commit(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{target}: {_reason(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically. Writers that can serialise to memory use this, so a
    full disk is an OSError here (one line) and not inside a library that aborts the process."""
    target = Path(target)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return target


@contextlib.contextmanager
def atomic_set(targets: list[Path]) -> Iterator[dict[Path, Path]]:
    """Yield {target: temporary path} for files written as one set (the artifacts of one export).

    The temporaries live in one staging folder beside the targets; only when the block succeeds
    are they renamed into place, one after the other in a few microseconds, so an export killed
    at any point before leaves the previous set whole rather than some old and some new files.
    """
    if not targets:
        yield {}
        return
    directory = targets[0].parent
    if not directory.is_dir():
        raise WriteError(f"{directory}: output directory does not exist")
    clean_stale(directory)
    stage = temp_name(directory / "staging")
    try:
        stage.mkdir()
    except OSError as exc:
        raise WriteError(f"{directory}: {_reason(exc)}") from None
    paths = {target: stage / target.name for target in targets}
    try:
        yield paths
        for target, tmp in paths.items():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _MODE)
        for target, tmp in paths.items():
            os.replace(tmp, target)
    except OSError as exc:
        raise WriteError(f"{directory}: {_reason(exc)}") from None
    finally:
        for tmp in paths.values():
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            stage.rmdir()


def ensure_writable(target: str | os.PathLike[str]) -> None:
    """Fail early, before expensive work, when `target` could not be written; leaves nothing."""
    _temp_beside(Path(target)).unlink()
