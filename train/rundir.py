"""The output folder of a training: claimed before any work, locked while a training writes it,
never overwritten unless the user asks.

- `--out` that is a file, or a folder that cannot be written, fails before the corpus is parsed.
- A folder that already holds a run's checkpoints is refused: `--resume` continues that run,
  `--force` starts a new one over it (its checkpoints are removed when the new run starts to
  train, not before: a run that fails to start loses nothing).
- The folder names its checkpoints: best.safetensors and last.safetensors.
- One training at a time per folder: a lock file (`.mpx-train.lock`, flock'd, so a killed
  process releases it, and removed at the end) keeps a second training from interleaving its
  best and last checkpoints with the first one's.
- Distributed, the folder has one owner: `mpx train --nproc N` claims it before starting its
  ranks (and tells them so), a torchrun started by hand lets rank 0 claim it; the other ranks
  only check it, and only the owner removes a replaced run's checkpoints (rank 0 writes them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mpx.runtime.atomic import clean_stale
from mpx.runtime.checkpoints import read_header
from mpx.runtime.checks import flag
from mpx.runtime.errors import MpxError, OptionsError

from .options import TrainOptions

log = logging.getLogger(__name__)

BEST = "best.safetensors"   # the weights of the lowest validation loss, and the spec: what export takes
LAST = "last.safetensors"   # + optimizer, lane states, position: what --resume continues
LOCK = ".mpx-train.lock"
CLAIMED_BY_LAUNCHER = "MPX_TRAIN_OUT_CLAIMED"  # the folder `mpx train --nproc` holds for its ranks


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path
    resume: bool
    force: bool
    owner: bool = True  # the process that holds the lock and may remove a replaced run

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def checkpoints(self) -> list[Path]:
        return [path for path in (self.best, self.last) if path.exists()]

    def begin(self) -> None:
        """Called when training starts: with --force, the previous run's checkpoints go now,
        so best and last can never come from two different runs."""
        if self.owner and self.force and not self.resume:
            for path in self.checkpoints:
                path.unlink()
                log.warning("--force: removed %s of the previous run", path)


def check(out_dir: str | os.PathLike[str], resume: bool = False, force: bool = False) -> RunDir:
    """Everything about OUT that can be refused without writing to it."""
    out = Path(out_dir)
    if resume and force:
        raise OptionsError("--resume continues the run in --out, --force replaces it: choose one")
    if out.exists() and not out.is_dir():
        raise MpxError(f"{out}: exists and is not a directory; --out takes a folder")
    run = RunDir(out, resume, force)
    if resume and not (out / LAST).is_file():
        raise MpxError(f"{out / LAST}: nothing to resume")
    if not resume and not force and run.checkpoints:
        names = ", ".join(p.name for p in run.checkpoints)
        raise MpxError(f"{out}: already holds a training run ({names}); pass --resume to continue "
                       "it, --force to replace it, or choose another --out")
    return run


@contextlib.contextmanager
def claim(out_dir: str | os.PathLike[str], *, resume: bool = False, force: bool = False) -> Iterator[RunDir]:
    """Check OUT, create it, and hold its lock for the block: once per training, before its
    corpus is parsed (train/api.py), or by the training loop for a library caller."""
    run = check(out_dir, resume, force)
    if not _owns(run.path.resolve()):
        yield dataclasses.replace(run, owner=False)
        return
    with _locked(run.path):
        yield run


def _owns(folder: Path) -> bool:
    """Rank 0 owns the folder, unless `mpx train --nproc` (its launcher) already holds it."""
    rank = int(os.environ.get("RANK", "0") or 0)
    return rank == 0 and os.environ.get(CLAIMED_BY_LAUNCHER) != str(folder)


@contextlib.contextmanager
def held_for_ranks(out_dir: str | os.PathLike[str], *, resume: bool = False, force: bool = False) -> Iterator[RunDir]:
    """The launcher's claim: held while its ranks run, which are told not to claim it again."""
    with claim(out_dir, resume=resume, force=force) as run:
        os.environ[CLAIMED_BY_LAUNCHER] = str(run.path.resolve())
        try:
            yield run
        finally:
            os.environ.pop(CLAIMED_BY_LAUNCHER, None)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        clean_stale(out)  # what a killed training or export left: temporaries, an unheld lock
        fd = _open_locked(out)
    except OSError as exc:
        raise MpxError(f"{out}: cannot write a training run here ({exc.strerror or exc})") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        # removed while still locked; a training that opened the file meanwhile finds it gone
        # once it has the lock, and opens a new one (_open_locked)
        (out / LOCK).unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no folder behind
        os.close(fd)


def _open_locked(out: Path) -> int:
    """The lock file, opened and locked; again if the file locked was removed meanwhile (by a
    training ending, or as stale by runtime/atomic.py), so two trainings never hold two files."""
    while True:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, out)
            if os.fstat(fd).st_ino == os.stat(out / LOCK).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd: int, out: Path) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise MpxError(f"{out}: another mpx train (pid {holder}) is writing this folder; wait for "
                       "it to finish or choose another --out") from None


def resumed_options(out_dir: str | os.PathLike[str], epochs: int, **where: Any) -> TrainOptions:
    """The options of the run saved in OUT/last.safetensors, with a new epoch target.

    Everything else comes from the checkpoint: the architecture is never rebuilt from flags.
    `where` may set device and precision: where a run continues is the user's choice.
    """
    run = check(out_dir, resume=True)
    saved = read_header(run.last).progress.get("options", {})
    return TrainOptions.from_dict(saved, epochs=epochs, **where)


def epochs_done(out_dir: str | os.PathLike[str]) -> int:
    """The epochs the run saved in OUT/last.safetensors has finished."""
    run = check(out_dir, resume=True)
    return int(read_header(run.last).progress.get("epoch", 0))


def ignored_on_resume(out_dir: str | os.PathLike[str], requested: TrainOptions,
                      given: Iterable[str]) -> list[str]:
    """The flags given with --resume that differ from the saved run's own options (which the
    run keeps: the architecture is never rebuilt from flags); `given` names the options set on
    the command line (TrainOptions or ModelConfig field names)."""
    saved = resumed_options(out_dir, requested.epochs)
    ignored = []
    for name in given:
        for mine, theirs in ((requested, saved), (requested.model, saved.model)):
            if name in {f.name for f in dataclasses.fields(mine)} and name != "epochs":
                if getattr(mine, name) != getattr(theirs, name):
                    ignored.append(f"{flag(name)} {getattr(mine, name)} (the run's own: {getattr(theirs, name)})")
    return ignored
