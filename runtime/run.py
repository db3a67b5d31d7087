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
from .errors import OptionsError
from .midi import TEMPO_RANGE, check_write_options
from .musical import estimate_tempo, loop_at_the_end
from .notes_csv import read_any, save_any
from .outputs import NOTE_SUFFIXES, PNG_SUFFIXES, check_outputs
from .session import Progress  # (notes done, notes asked for) after every note; the CLI draws a bar
from .spec import Sampling

log = logging.getLogger(__name__)


AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    program: int = 0
    velocity: int | None = None   # None: the generated velocities; a number: every note at it
    # the tempo (bpm) the MIDI file says, or "auto": the seed's, estimated from its onsets
    # (runtime/musical.py). The notes' times in seconds are the same whatever it says.
    tempo: float | str = 120.0

    def __post_init__(self) -> None:
        tempo = self.tempo
        if isinstance(tempo, str) and tempo.strip().lower() != AUTO:
            try:
                tempo = float(tempo)
            except ValueError:
                raise OptionsError(f"tempo must be a number {TEMPO_RANGE[0]:g}..{TEMPO_RANGE[1]:g} (bpm) or "
                                   f"{AUTO}, got {self.tempo!r}", "tempo") from None
        object.__setattr__(self, "tempo", AUTO if isinstance(tempo, str) else tempo)
        check_write_options(self.program, self.velocity, 120.0 if self.tempo == AUTO else self.tempo)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class RunResult:
    seed_file: Path
    primer: np.ndarray          # [P, 4]
    notes: np.ndarray           # [K, n, 4]: every note generated
    outputs: list[Path]
    seed: int                   # the random seed used: the same seed repeats this run
    plot: Path | None = None
    takes: list[np.ndarray] = dataclasses.field(default_factory=list)  # what each output holds after the primer
    tempo: float = 120.0        # the tempo the files say (bpm)


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
                   progress: Progress | None = None, pedal: bool = False) -> RunResult:
    """Read `seed` (MIDI or CSV), generate, write each output atomically; return what was made.

    Every check (seed readable and long enough; outputs of a known kind, not the seed, new
    unless `force`, writable; matplotlib there for `plot`) happens before generation, so a bad
    input costs nothing and leaves nothing behind. pedal=True reads a MIDI seed's sounding
    durations (the sustain pedal); a model trained on the other kind is said in one line.
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
    seed_notes = read_any(seed, pedal)
    warn_pedal(generator.spec.training, pedal, seed)
    done = generator.rollout(seed_notes, options, progress, source=str(seed))
    primer, notes, takes = done.primer, done.notes, done.takes
    note_rules.check_made(notes, generator.spec.config, generator.backend.path)
    tempo = _tempo(write.tempo, seed_notes, seed)
    # one set: every output and the plot, or none of them (a full disk at take 37 of 64, a
    # second process claiming an output first without --force)
    with atomic_set(paths + ([plot] if plot is not None else []), replace=force) as staged:
        for path, take in zip(paths, takes):
            sequence = np.concatenate([primer, take]) if include_primer else take  # the primer, then where it ends
            save_any(sequence, staged[path], name=path, **{**dataclasses.asdict(write), "tempo": tempo})
        if plot is not None:
            from .plot import piano_roll
            piano_roll(primer, takes, staged[plot], title=f"{seed.name} + mpx", takes=[p.name for p in paths])
    for path, take in zip(paths, takes):
        log.info("wrote %s (%d notes)", path, len(take) + (len(primer) if include_primer else 0))
        _say_if_looping(path, take, options.sampling(generator.spec))
    return RunResult(seed_file=seed, primer=primer, notes=notes, outputs=paths, seed=done.seed, plot=plot,
                     takes=takes, tempo=tempo)


def _tempo(asked: float | str, seed_notes: np.ndarray, seed: Path) -> float:
    """The tempo to write: the one asked for, or the seed's (120 bpm when it cannot tell)."""
    if asked != AUTO:
        return float(asked)
    found = estimate_tempo(seed_notes)
    if found is None:
        log.warning("%s: too few notes to tell its tempo; the file says 120 bpm", seed)
        return 120.0
    return round(found, 1)


def pedal_mismatch(training: dict, pedal: bool, source: str | os.PathLike[str]) -> str | None:
    """One line when MIDI is read with durations (pedal: sounding; else key-down) other than
    the ones the model was trained on (its spec's training["pedal"]; absent: key-down, as every
    model before the option). None when they agree, or for a CSV (durations as written)."""
    trained = bool(training.get("pedal", False))
    if Path(source).suffix.lower() == ".csv" or trained == pedal:
        return None
    if trained:
        return (f"{source}: the model was trained on sounding durations (--pedal) and this MIDI is read "
                f"with key-down durations; add --pedal to give it what it learned")
    return (f"{source}: read with sounding durations (--pedal), but the model was trained on key-down "
            f"durations and continues in those")


def warn_pedal(training: dict, pedal: bool, source: str | os.PathLike[str]) -> None:
    message = pedal_mismatch(training, pedal, source)
    if message:
        log.warning("%s", message)


def _say_if_looping(path: Path, take: np.ndarray, sampling: Sampling) -> None:
    """A note when a take ends in a loop: greedy decoding's usual fate (the likeliest note after
    a note is the same every time), which a user should hear about before listening."""
    loop = loop_at_the_end(take)
    if loop is not None:
        greedy = " (greedy decoding: temperature 0 takes the likeliest note every time; a temperature " \
                 "above 0 varies it)" if 0.0 in sampling.temperature else ""
        log.warning("%s: %s: the continuation fell into a loop%s", path, loop, greedy)
