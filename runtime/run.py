"""The main job: seed file -> primer -> K continuations -> K files (MIDI or CSV), and a plot."""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import bins
from .contract import FEATURES
from .errors import ArtifactError
from .generate import GenerationOptions, Generator
from .midi import check_write_options
from .notes_csv import read_any, write_any
from .outputs import NOTE_SUFFIXES, PNG_SUFFIXES, check_outputs
from .rng import SEED_MAX

log = logging.getLogger(__name__)

# progress(notes done, notes in all) after every note; the CLI draws a bar on a terminal
Progress = Callable[[int, int], None]


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
    primer = generator.primer_from(read_any(seed), options, source=str(seed))
    notes, used = _generate(generator, primer, options, progress)
    check_generated(notes, generator)
    for path, sequence in zip(paths, notes):
        if include_primer:  # one file: the primer, then the continuation where it ends
            sequence = np.concatenate([primer, sequence])
        write_any(sequence, path, **dataclasses.asdict(write))
        log.info("wrote %s (%d notes)", path, len(sequence))
    if plot is not None:
        from .plot import piano_roll
        piano_roll(primer, notes[0], plot, title=f"{seed.name} + mpx")
    return RunResult(seed_file=seed, primer=primer, notes=notes, outputs=paths, seed=used, plot=plot)


def check_generated(notes: np.ndarray, generator: Generator) -> None:
    """Refuse notes no intact model can make. A damaged file (bytes flipped in its weights or
    its decode constants; ONNX and safetensors carry no checksum, torch.jit.load checks none)
    may still load and run, and then make notes outside its own bins: steps of hours that no
    MIDI reader accepts back. Every note an intact graph samples lies within its spec's bins."""
    config = generator.spec.config
    limits = [(0.0, 127.0)] + [(0.0, float(b.edges()[-1])) for b in bins.of(config)[1:3]] + [(1.0, 127.0)]
    for a, (name, (low, high)) in enumerate(zip(FEATURES, limits)):
        values = notes[..., a]
        bad = ~np.isfinite(values) | (values < low - 1e-6) | (values > high * (1 + 1e-5) + 1e-6)
        if bad.any():
            raise ArtifactError(f"{generator.backend.path}: the model made a note outside its own spec "
                                f"({name} {float(values[bad][0]):g}, its bins allow {low:g}..{high:g}): "
                                "the file is damaged")


def _generate(generator: Generator, primer: np.ndarray, options: GenerationOptions,
              progress: Progress | None) -> tuple[np.ndarray, int]:
    """Notes [K, n, 4] and the seed used; note by note when someone watches the progress."""
    if progress is None:
        notes, used = generator.generate_seeded(primer, options=options)
        return notes.reshape(options.num_outputs, options.notes, -1), used
    used = options.seed if options.seed is not None else secrets.randbelow(SEED_MAX + 1)
    options = dataclasses.replace(options, seed=used)
    out = np.empty((options.num_outputs, options.notes, primer.shape[1]), np.float32)
    for i, note in enumerate(generator.stream(primer, options=options)):
        out[:, i] = note
        progress(i + 1, options.notes)
    return out, used
