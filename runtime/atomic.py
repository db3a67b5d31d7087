"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one,
and an output is claimed atomically: two processes can never both write one path.

Without `replace` (no --force), the finished file is linked onto its name (os.link fails when
the name exists: a claim no other process can also win), so of several processes writing one
output the first to finish keeps it and the others fail with `Exists`; "does it exist? then
write" would let every one of them pass the check and replace the others' files. With
`replace` (--force), a rename replaces the old file in one step. Where a file system has no
hard links, an exclusive create claims the name, and the rename fills it.

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


class Exists(WriteError):
    """An output that exists, made by another process after this one checked (no --force)."""

    def __init__(self, target: Path) -> None:
        super().__init__(f"{target}: exists (written meanwhile by another process?); pass --force to "
                         "replace it, or choose another output")


_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def _place(tmp: Path, target: Path, replace: bool) -> None:
    """Move a finished temporary file onto `target`; without `replace`, only if `target` does
    not exist, decided atomically by the file system."""
    if replace:
        os.replace(tmp, target)
        return
    _claim(tmp, target)
    tmp.unlink(missing_ok=True)


def _claim(tmp: Path, target: Path) -> None:
    """Put `tmp`'s file at `target` unless `target` exists (then `Exists`)."""
    try:
        os.link(tmp, target)
        return
    except FileExistsError:
        raise Exists(target) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    try:  # no hard links here: claim the name with an exclusive create, then fill it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _MODE))
    except FileExistsError:
        raise Exists(target) from None
    os.replace(tmp, target)


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write here ({exc.strerror})"
    return exc.strerror or str(exc)


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.mpx-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int, made: float) -> bool:
    """Whether the process that made a temporary (last changed at `made`) may still be running:
    its pid exists, and (where the system says when a process started) it started before."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        pass
    started = _start_time(pid)
    return started is None or started <= made + 2.0  # later: a new process reusing the pid


def _start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), on Linux; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


_LOCK = re.compile(r"^\.mpx-[a-z]+\.lock$")  # mpx's lock files (rundir's .mpx-train.lock)


def clean_stale(directory: Path) -> list[Path]:
    """Remove the leftovers of mpx processes killed without cleaning up (kill -9, power loss)
    in `directory`: temporary files and staging folders whose process is gone, and lock files
    no process holds. Returns what was removed; live processes' files stay."""
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        try:
            if match:
                if _alive(int(match.group(1)), entry.lstat().st_mtime):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    for child in entry.iterdir():
                        child.unlink()
                    entry.rmdir()
                else:
                    entry.unlink()
            elif not (_LOCK.match(entry.name) and _remove_unheld_lock(entry)):
                continue
        except OSError:
            continue  # someone else's, or already gone: not ours to insist on
        log.info("removed %s, left by an interrupted mpx process", entry)
        removed.append(entry)
    return removed


def _remove_unheld_lock(path: Path) -> bool:
    """Remove a lock file that no process holds (its holder was killed): taken first, so no
    process can hold it while it goes. Lock takers check that the file they locked is still
    the one at its name (train/rundir.py)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): whether it is held cannot be told
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held: a live training
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


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
    """Make the finished `tmp` the file `target` (replacing it)."""
    _finish(tmp)
    _place(tmp, target, replace=True)


def _commit_new(tmp: Path, target: Path) -> None:
    """Make the finished `tmp` the file `target`, which must not exist (else `Exists`)."""
    _finish(tmp)
    _place(tmp, target, replace=False)


def _finish(tmp: Path) -> None:
    with open(tmp, "rb+") as fh:  # on disk before the rename makes it visible
        os.fsync(fh.fileno())
    os.chmod(tmp, _MODE)  # after the writer: some writers replace the file they are given


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds.

    The temporary file lives in the target's directory so the final move stays on one file
    system (atomic there). replace=False: `Exists` if `target` exists by then (the claim is
    the file system's, so of two processes only one wins). On any exception, KeyboardInterrupt
    included, the temporary file is removed and `target` is left as it was; an OSError (the
    writer's or the move's) becomes a WriteError naming `target`.
    """
    target = Path(target)
    tmp = _temp_beside(target)
    try:
        yield tmp
        (_commit if replace else _commit_new)(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{target}: {_reason(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes, *, replace: bool = True) -> Path:
    """Write `data` to `target` atomically. Writers that can serialise to memory use this, so a
    full disk is an OSError here (one line) and not inside a library that aborts the process."""
    target = Path(target)
    with atomic_path(target, replace=replace) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return target


@contextlib.contextmanager
def atomic_set(targets: list[Path], *, replace: bool = True) -> Iterator[dict[Path, Path]]:
    """Yield {target: temporary path} for files written as one set (the artifacts of one
    export, the K outputs of one run and its plot): all of them or none.

    The temporaries live in a staging folder beside their targets (one per folder); only when
    the block succeeds are they moved into place, one after the other in microseconds, so a
    run killed or failing at any point before (a full disk at take 37 of 64) leaves the
    previous files whole and no part of the new set. replace=False: if any target exists by
    then (another process claimed it), the ones already placed are taken back and `Exists`
    names it: still all or none.
    """
    if not targets:
        yield {}
        return
    stages: dict[Path, Path] = {}
    paths: dict[Path, Path] = {}
    try:
        for target in targets:
            directory = target.parent
            if directory not in stages:
                stages[directory] = _stage(directory)
            paths[target] = stages[directory] / target.name
        yield paths
        for tmp in paths.values():
            _finish(tmp)
        _place_all(paths, replace)
    except OSError as exc:
        raise WriteError(f"{targets[0].parent}: {_reason(exc)}") from None
    finally:
        for tmp in paths.values():
            tmp.unlink(missing_ok=True)
        for stage in stages.values():
            with contextlib.suppress(OSError):
                stage.rmdir()


def _stage(directory: Path) -> Path:
    if not directory.is_dir():
        raise WriteError(f"{directory}: output directory does not exist")
    clean_stale(directory)
    stage = temp_name(directory / "staging")
    try:
        stage.mkdir()
    except OSError as exc:
        raise WriteError(f"{directory}: {_reason(exc)}") from None
    return stage


def _place_all(paths: dict[Path, Path], replace: bool) -> None:
    placed: list[tuple[Path, tuple[int, int]]] = []
    try:
        for target, tmp in paths.items():
            if replace:
                os.replace(tmp, target)
            else:
                _claim(tmp, target)
                found = os.stat(target)
                placed.append((target, (found.st_dev, found.st_ino)))
    except Exists:
        for target, identity in placed:  # take back what this set placed, if it is still ours
            with contextlib.suppress(OSError):
                found = os.stat(target)
                if (found.st_dev, found.st_ino) == identity:
                    target.unlink()
        raise


def ensure_writable(target: str | os.PathLike[str]) -> None:
    """Fail early, before expensive work, when `target` could not be written; leaves nothing."""
    _temp_beside(Path(target)).unlink()
