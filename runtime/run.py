"""The main job: seed file -> primer -> K continuations -> K files (MIDI or CSV), and a plot."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from . import notes as note_rules
from .generate import GenerationOptions, Generator
from .atomic import atomic_set
from .midi import check_write_options
from .notes_csv import read_any, save_any
from .outputs import NOTE_SUFFIXES, PNG_SUFFIXES, check_outputs
from .session import Progress  # (notes done, notes asked for) after every note; the CLI draws a bar

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    program: int = 0
    velocity: int | None = None   # None: the generated velocities; a number: every note at it
    tempo: float = 120.0

    def __post_init__(self) -> None:
        check_write_options(self.program, self.velocity, self.tempo)


@dataclasses.dataclass(frozen=True)
class RunResult:
    seed_file: Path
    primer: np.ndarray          # [P, 4]
    notes: np.ndarray           # [K, n, 4]
    outputs: list[Path]
    seed: int                   # the random seed used: the same seed repeats this run
    plot: Path | None = None


def output_paths(out: str | os.PathLike[str], k: int) -> list[Path]:
    """`out` for one output; out-1, out-2, ... (before the suffix) for K > 1."""
    out = Path(out)
    if k == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, k + 1)]


def default_output(seed: str | os.PathLike[str]) -> Path:
    return Path(f"{Path(seed).stem}-mpx.mid")


def generate_files(generator: Generator, seed: str | os.PathLike[str],
                   out: str | os.PathLike[str] | None = None,
                   options: GenerationOptions | None = None,
                   write: WriteOptions | None = None, include_primer: bool = False, *,
                   plot: str | os.PathLike[str] | None = None, force: bool = False,
                   progress: Progress | None = None) -> RunResult:
    """Read `seed` (MIDI or CSV), generate, write each output atomically; return what was made.

    Every check (seed readable and long enough; outputs of a known kind, not the seed, new
    unless `force`, writable; matplotlib there for `plot`) happens before generation, so a bad
    input costs nothing and leaves nothing behind.
    """
    options = options or GenerationOptions()
    write = write or WriteOptions()
    seed = Path(seed)
    paths = check_outputs(output_paths(out or default_output(seed), options.num_outputs), [seed],
                          force=force, suffixes=NOTE_SUFFIXES)
    if plot is not None:
        from .plot import require_matplotlib
        plot = check_outputs([plot], [seed, *paths], force=force, suffixes=PNG_SUFFIXES, flag="--plot")[0]
        require_matplotlib()
    done = generator.rollout(read_any(seed), options, progress, source=str(seed))
    primer, notes = done.primer, done.notes
    note_rules.check_made(notes, generator.spec.config, generator.backend.path)
    # one set: every output and the plot, or none of them (a full disk at take 37 of 64, a
    # second process claiming an output first without --force)
    with atomic_set(paths + ([plot] if plot is not None else []), replace=force) as staged:
        for path, sequence in zip(paths, notes):
            if include_primer:  # one file: the primer, then the continuation where it ends
                sequence = np.concatenate([primer, sequence])
            save_any(sequence, staged[path], name=path, **dataclasses.asdict(write))
        if plot is not None:
            from .plot import piano_roll
            piano_roll(primer, notes, staged[plot], title=f"{seed.name} + mpx", takes=[p.name for p in paths])
    for path in paths:
        log.info("wrote %s", path)
    return RunResult(seed_file=seed, primer=primer, notes=notes, outputs=paths, seed=done.seed, plot=plot)
