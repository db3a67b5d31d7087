"""Generation: a Generator wraps any backend and turns a primer into notes, through a session.

The graph samples every note itself (contract v2); a session (runtime/session.py) only feeds
it: the primer once, then one call per note with the note it just made, the carried state, and
the uniforms of the portable random stream (runtime/rng.py), so one seed gives the same notes
from every backend and every consumer that follows the protocol (docs/contract.md, "Generation protocol").

Stateful mode (default): O(1) work per note. Window mode is the tutorial's way, re-running the
last `seq_len` notes from a zero state for every note; it is kept as the reference.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Literal

import numpy as np

from . import notes as note_rules
from .backends import Backend
from .checks import choice, integer
from .errors import OptionsError
from .rng import check_seed
from .session import Progress, Session
from .spec import ModelSpec, Sampling, per_attribute

log = logging.getLogger(__name__)

Mode = Literal["stateful", "window"]
MODES = ("stateful", "window")
MAX_NOTES = 10_000_000
MAX_OUTPUTS = 4096
MAX_PRIMER = 100_000


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """Every runtime option of generation, checked in one place (check)."""

    notes: int = 256                    # notes to generate per output
    temperature: float | tuple[float, ...] | None = None  # one or 4 values; None = the model's default
    top_p: float | tuple[float, ...] | None = None        # one or 4 values; None = the model's default
    seed: int | None = None             # None = fresh entropy (reported, so a run can be repeated)
    mode: Mode = "stateful"
    num_outputs: int = 1                # K variations in one batched pass
    primer_notes: int | None = None     # None = the model's seq_len (or the whole seed if shorter)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        integer("notes", self.notes, 1, MAX_NOTES)
        integer("num_outputs", self.num_outputs, 1, MAX_OUTPUTS)
        if self.primer_notes is not None:
            integer("primer_notes", self.primer_notes, 1, MAX_PRIMER)
        choice("mode", self.mode, MODES)
        if self.seed is not None:
            check_seed(self.seed)
        for name in ("temperature", "top_p"):
            if getattr(self, name) is not None:
                per_attribute(name, getattr(self, name))
        Sampling(self.temperature if self.temperature is not None else 1.0,
                 self.top_p if self.top_p is not None else 1.0)

    def sampling(self, spec: ModelSpec) -> Sampling:
        """The per-attribute parameters: these options where given, else the model's defaults."""
        return Sampling(self.temperature if self.temperature is not None else spec.sampling.temperature,
                        self.top_p if self.top_p is not None else spec.sampling.top_p)


@dataclasses.dataclass(frozen=True)
class Rollout:
    primer: np.ndarray      # [P, 4]: the notes that primed the model
    notes: np.ndarray       # [K, n, 4]
    seed: int               # the random seed used: the same seed repeats this rollout


class Generator:
    """Generates notes from any backend. Each call runs its own session, so one Generator may
    serve several threads (as far as its backend does: onnxruntime and torch both do)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec: ModelSpec = backend.spec

    def options(self, options: GenerationOptions | None = None, **overrides: object) -> GenerationOptions:
        return dataclasses.replace(options or GenerationOptions(), **overrides)  # type: ignore[arg-type]

    def primer_from(self, notes: np.ndarray, options: GenerationOptions, source: str = "primer") -> np.ndarray:
        """The last primer_notes (default: the spec's seq_len, or all of a shorter seed)."""
        notes = note_rules.check(notes, source)
        if len(notes) == 0:
            raise OptionsError(f"{source}: holds no notes to prime the model with")
        wanted = options.primer_notes or self.spec.seq_len
        if options.primer_notes and len(notes) < wanted:
            raise OptionsError(f"{source}: has {len(notes)} notes, fewer than --primer-notes {wanted}")
        return notes[-wanted:]

    def session(self, options: GenerationOptions | None = None, **overrides: object) -> Session:
        """A session of `num_outputs` rows set up by these options (seed, sampling, mode), not
        yet primed."""
        opts = self.options(options, **overrides)
        return Session(self.backend, opts.num_outputs, seed=opts.seed, sampling=opts.sampling(self.spec),
                       window=self.spec.seq_len if opts.mode == "window" else None)

    def rollout(self, seed_notes: np.ndarray, options: GenerationOptions | None = None,
                progress: Progress | None = None, source: str = "primer", **overrides: object) -> Rollout:
        """The primer cut from `seed_notes`, the K continuations [K, n, 4] and the seed used;
        progress(done, n) after every note when given."""
        opts = self.options(options, **overrides)
        primer = self.primer_from(seed_notes, opts, source)
        session = self.session(opts)
        session.prime(primer, source)
        return Rollout(primer, session.generate(opts.notes, progress), session.seed)

    def stream(self, primer: np.ndarray, n: int | None = None,
               options: GenerationOptions | None = None, **overrides: object) -> Iterator[np.ndarray]:
        """Yield notes one at a time: [4] per note, or [K, 4] when num_outputs K > 1."""
        opts = self.options(options, **_notes(overrides, n))
        session = self.session(opts)
        session.prime(self.primer_from(primer, opts))
        for note in session.notes(opts.notes):
            yield note[0] if opts.num_outputs == 1 else note

    def generate(self, primer: np.ndarray, n: int | None = None,
                 options: GenerationOptions | None = None, **overrides: object) -> np.ndarray:
        """Notes [n, 4], or [K, n, 4] when num_outputs K > 1."""
        return self.generate_seeded(primer, n, options, **overrides)[0]

    def generate_seeded(self, primer: np.ndarray, n: int | None = None,
                        options: GenerationOptions | None = None, **overrides: object) -> tuple[np.ndarray, int]:
        """(notes, the seed used): with no seed given, the fresh one that repeats this run."""
        done = self.rollout(primer, options, **_notes(overrides, n))
        return (done.notes[0] if len(done.notes) == 1 else done.notes), done.seed


def _notes(overrides: dict[str, object], n: int | None) -> dict[str, object]:
    return overrides if n is None else {**overrides, "notes": n}
