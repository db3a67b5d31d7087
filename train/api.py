"""`mpx train` as one library call: the run folder claimed once and the device checked once,
both before the corpus is parsed, then the corpus parsed and the model trained (or, with
nproc > 1, the same command started as torchrun ranks that train together).

    result = train_command(TrainJob(data=["midi/"], out=Path("runs/a"), options=TrainOptions()))

A front end follows the work through TrainHooks (the CLI draws progress bars with them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from mpx.runtime.errors import MpxError

from . import corpus as corpora, rundir
from .cache import NoteCache
from .distributed import (LaunchInterrupted, LaunchOptions, RankFailed, check_launch, env_rank, launch,
                          without_flag)
from .loop import EpochHook, Interrupted, StepHook, TrainResult, ValidateHook, check_device, train_in
from .options import TrainOptions

log = logging.getLogger(__name__)

ParsedHook = Callable[[int, int], None]  # (files parsed, files to parse)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """What `mpx train` is asked to do: the data, the folder, the options and how to run."""

    data: Sequence[str | os.PathLike[str]]
    out: Path
    options: TrainOptions = TrainOptions()
    resume: bool = False            # continue the run in `out` (its own options, up to options.epochs)
    force: bool = False             # start a new run over the one in `out`
    nproc: int = 1                  # processes on this machine (torchrun ranks)
    max_files: int | None = None
    metadata: Path | None = None    # the split's metadata (found in DATA by default)
    workers: int | None = None      # processes parsing MIDI
    cache_dir: Path | None = None   # parsed-notes cache
    given: tuple[str, ...] = ()     # the options the user set (warned about when --resume ignores them)


@contextlib.contextmanager
def _quiet(main: bool) -> Iterator[None]:
    yield None


@contextlib.contextmanager
def _quiet_training(main: bool, first_epoch: int, epochs: int) -> Iterator[tuple[None, None, None]]:
    yield None, None, None


@dataclasses.dataclass(frozen=True)
class TrainHooks:
    """How a front end follows a training. Each phase is a context opened for its duration
    that yields the phase's callbacks; `main` is False on the ranks that stay quiet."""

    parsing: Callable[[bool], AbstractContextManager[ParsedHook | None]] = _quiet
    # (main, the epoch that comes first (1, or the next of a resumed run), the last epoch)
    training: Callable[[bool, int, int], AbstractContextManager[tuple[StepHook | None, ValidateHook | None,
                                                                      EpochHook | None]]] = _quiet_training
    echo: Callable[[str], None] = log.info


def train_command(job: TrainJob, hooks: TrainHooks = TrainHooks(),
                  argv: Sequence[str] | None = None) -> TrainResult | None:
    """Run `mpx train`; the result on the main process (None on the others, and for the
    launcher of nproc > 1 ranks, whose `argv` are the command's own arguments)."""
    launcher = LaunchOptions(job.nproc)
    if launcher.nproc > 1:
        with rundir.held_for_ranks(job.out, resume=job.resume, force=job.force):  # before any rank starts
            _launch_ranks(launcher, job, argv)
        return None
    device = check_device(job.options)
    main = env_rank() == 0  # under torchrun, rank 0 speaks for all
    if not main:
        logging.getLogger("mpx").setLevel(logging.ERROR)
    with rundir.claim(job.out, resume=job.resume, force=job.force) as run_dir:  # before the corpus is parsed
        options, first_epoch = job.options, 1
        if job.resume:
            if main:
                _warn_ignored(rundir.ignored_on_resume(job.out, options, job.given))
            options = rundir.resumed_options(job.out, options.epochs, device=options.device,
                                             precision=options.precision)
            first_epoch = rundir.epochs_done(job.out) + 1
        with hooks.parsing(main) as on_parsed:
            corpus = corpora.load_corpus(job.data, max_files=job.max_files, cache=NoteCache(job.cache_dir),
                                 workers=job.workers, metadata=job.metadata, splits=("train", "val"),
                                 on_parsed=on_parsed, pedal=options.pedal)
        if main:
            summary = corpus.summary()
            hooks.echo(f"corpus: {summary['files']} files, {summary['notes']} notes, {summary['skipped']} skipped; "
                       + ", ".join(f"{k} {v['files']} files" for k, v in summary["splits"].items()))
        with hooks.training(main, first_epoch, options.epochs) as (on_step, on_validate, on_epoch):
            try:
                result = train_in(run_dir, corpus, options, device, on_step=on_step, on_epoch=on_epoch,
                                  on_validate=on_validate)
            except Interrupted:
                if main:
                    raise
                raise Interrupted("") from None  # rank 0 says it for all
    if main:
        hooks.echo(f"best checkpoint: {result.best}")
        return result
    return None


def _warn_ignored(ignored: list[str]) -> None:
    if ignored:
        log.warning("--resume continues the saved run with its own options; ignoring %s", ", ".join(ignored))


def _launch_ranks(launcher: LaunchOptions, job: TrainJob, argv: Sequence[str] | None) -> None:
    """`mpx train --nproc N`: the same command as N torchrun ranks on this machine."""
    if argv is None:
        raise MpxError("training with nproc > 1 starts the `mpx train` command in each rank: run it from the command line")
    check_launch(launcher, job.options.device)
    saved = job.out / rundir.LAST
    try:
        launch(launcher, without_flag(argv, "--nproc"))
    except LaunchInterrupted as exc:  # `mpx: interrupted (signal SIGINT): ...`, exit 130, as one process says it
        kept = f": {saved} holds the state at the last batch; continue with --resume" if saved.is_file() else ""
        raise Interrupted(f"{exc}{kept}") from None
    except RankFailed as exc:
        kept = f"; {saved} keeps the last saved state (continue with --resume)" if saved.is_file() else ""
        raise MpxError(f"{exc}{kept}") from None
