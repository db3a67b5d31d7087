"""Generation: a Generator wraps any backend and turns a primer into notes, through a session.

The graph draws every note itself (contract v3); a session (runtime/session.py) only feeds
it: the primer once, then one call per note with the note it just made, the carried state, the
uniforms of the portable random stream (runtime/rng.py) and each row's sampling parameters and
controls, so one seed gives the same notes from every backend and every consumer that follows
the protocol (docs/contract.md, "Generation protocol"). The controls are, by default, the
primer's own summaries (runtime/controls.py `resolve`); `controls` and `key` set some of them.

Stateful mode (default): O(1) work per note. Window mode is the tutorial's way, re-running the
last `seq_len` notes from a zero state for every note; it is kept as the reference.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np

from . import controls as control_rules, notes as note_rules
from .backends import Backend
from .checks import choice, integer, number
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
MAX_SECONDS = 24 * 3600.0
# With `seconds`, the most notes a take may have unless `notes` says: more than piano music
# plays (a model stuck on chords, steps of 0, would otherwise never reach the time asked for).
NOTES_PER_SECOND = 100


@dataclasses.dataclass(frozen=True)
class Take:
    """One take's own settings (GenerationOptions.takes); None: the options' shared ones. Its
    controls and key are added to the shared ones (its own win where both name a control)."""

    temperature: float | tuple[float, ...] | None = None
    top_p: float | tuple[float, ...] | None = None
    controls: Mapping[str, float | None] | None = None
    key: str | None = None


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
    # Where in the seed the primer begins: None = it ends where the seed ends; "start"; a note
    # index (int, or "120": 0 is the first note); a time into the seed ("30s", "1:30").
    primer_from: str | int | None = None
    # Generate until each take lasts this long (s, from the primer's last onset: every kept
    # note starts before it, at least one note); `notes` is then the most notes a take may have.
    seconds: float | None = None
    # Controls the model follows (runtime/controls.py: name -> value in its units; None = not
    # given): those asked for, their family released, the rest held at the primer's summaries
    # (controls.resolve). `key` ("D minor") sets the pitch-class profile pc0..pc11.
    controls: Mapping[str, float | None] | None = None
    key: str | None = None
    # One Take per output (num_outputs of them): each take's own sampling and controls, all
    # drawn in one graph call per note (contract v3 takes them per row).
    takes: tuple[Take, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.takes, list):
            object.__setattr__(self, "takes", tuple(self.takes))
        self.check()

    def check(self) -> None:
        integer("notes", self.notes, 1, MAX_NOTES)
        integer("num_outputs", self.num_outputs, 1, MAX_OUTPUTS)
        if self.primer_notes is not None:
            integer("primer_notes", self.primer_notes, 1, MAX_PRIMER)
        choice("mode", self.mode, MODES)
        if self.seed is not None:
            check_seed(self.seed)
        primer_start(self.primer_from)
        if self.seconds is not None:
            number("seconds", self.seconds, 0, MAX_SECONDS, low_open=True, unit="s")
        for name in ("temperature", "top_p"):
            if getattr(self, name) is not None:
                per_attribute(name, getattr(self, name))
        Sampling(self.temperature if self.temperature is not None else 1.0,
                 self.top_p if self.top_p is not None else 1.0)
        # names and ranges, checked now (no primer: nothing is held)
        control_rules.resolve(np.zeros((0, len(note_rules.COLUMNS)), np.float32), self.requested_controls())
        if self.takes is not None:
            if not isinstance(self.takes, tuple) or not all(isinstance(t, Take) for t in self.takes):
                raise OptionsError("takes must be a sequence of Take, one per output", "takes")
            if len(self.takes) != self.num_outputs:
                raise OptionsError(f"takes: {len(self.takes)} given for num_outputs {self.num_outputs}; "
                                   "give one per output", "takes")
            for i in range(len(self.takes)):
                self.take_sampling(i, Sampling(1.0, 1.0))
                control_rules.resolve(np.zeros((0, len(note_rules.COLUMNS)), np.float32), self.requested_controls(i))

    def requested_controls(self, take: int | None = None) -> dict[str, float | None]:
        """The controls asked for (of take `take`: the shared ones and its own), by name, a key
        spelled out as pc0..pc11."""
        requested = _spelled(self.controls, self.key, "key")
        if take is not None and self.takes is not None:
            own = self.takes[take]
            mine = _spelled(own.controls, own.key, f"takes[{take}].key")
            if own.key is not None:  # its key replaces the shared profile
                requested = {k: v for k, v in requested.items() if k not in control_rules.PITCH_CLASSES}
            requested.update(mine)
        return requested

    def take_sampling(self, take: int, base: Sampling) -> Sampling:
        """Take `take`'s sampling: its own where it gives them, else `base` (the shared one)."""
        own = self.takes[take] if self.takes is not None else Take()
        for name in ("temperature", "top_p"):
            if getattr(own, name) is not None:
                per_attribute(f"takes[{take}].{name}", getattr(own, name))
        return Sampling(own.temperature if own.temperature is not None else base.temperature,
                        own.top_p if own.top_p is not None else base.top_p)

    def sampling(self, spec: ModelSpec) -> Sampling:
        """The per-attribute parameters: these options where given, else the model's defaults."""
        return Sampling(self.temperature if self.temperature is not None else spec.sampling.temperature,
                        self.top_p if self.top_p is not None else spec.sampling.top_p)


def _spelled(controls: Mapping[str, float | None] | None, key: str | None, field: str) -> dict[str, float | None]:
    """Controls by name with a key spelled out as pc0..pc11."""
    if controls is not None and not isinstance(controls, Mapping):
        raise OptionsError(f"controls must map control names to values, got {type(controls).__name__}", "controls")
    requested = dict(controls or {})
    if key is not None:
        both = sorted(set(requested) & set(control_rules.PITCH_CLASSES))
        if both:
            raise OptionsError(f"{field} {key!r} sets the pitch-class profile; {', '.join(both)} "
                               "cannot be given beside it", "key")
        requested.update(zip(control_rules.PITCH_CLASSES, map(float, control_rules.key_profile(key))))
    return requested


def notes_for(seconds: float) -> int:
    """The most notes a take of `seconds` may have when nothing else says (NOTES_PER_SECOND)."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        return 1  # GenerationOptions refuses such a time, naming it
    return min(MAX_NOTES, max(1, math.ceil(seconds * NOTES_PER_SECOND)))


_TIME = re.compile(r"^(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)(s?)$")


def primer_start(value: str | int | None) -> tuple[str, float] | None:
    """primer_from as ("note", index) or ("seconds", time); None: the primer ends with the seed.
    OptionsError naming primer_from for anything else."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return "note", float(value)
    text = value.strip().lower() if isinstance(value, str) else ""
    if text == "start":
        return "note", 0.0
    if text.isdigit():
        return "note", float(text)
    found = _TIME.match(text)
    if found and (found.group(1) is not None or found.group(3)):  # 1:30 or 90s (a bare 90 is a note)
        return "seconds", 60.0 * int(found.group(1) or 0) + float(found.group(2))
    raise OptionsError(f"primer_from must be start, a note index (0 is the first note) or a time into the "
                       f"seed (30s, 1:30), got {value!r}", "primer_from")


@dataclasses.dataclass(frozen=True)
class Rollout:
    primer: np.ndarray      # [P, 4]: the notes that primed the model
    notes: np.ndarray       # [K, n, 4]: every note generated
    seed: int               # the random seed used: the same seed repeats this rollout
    lengths: np.ndarray | None = None   # [K]: the notes of each take (with `seconds`); None: all n

    @property
    def takes(self) -> list[np.ndarray]:
        """Each take's notes: [n_k, 4] (with `seconds`, those that start within the time asked)."""
        lengths = [self.notes.shape[1]] * len(self.notes) if self.lengths is None else self.lengths
        return [take[:int(n)] for take, n in zip(self.notes, lengths)]


class Generator:
    """Generates notes from any backend. Each call runs its own session, so one Generator may
    serve several threads (as far as its backend does: onnxruntime and torch both do)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec: ModelSpec = backend.spec

    def options(self, options: GenerationOptions | None = None, **overrides: object) -> GenerationOptions:
        return dataclasses.replace(options or GenerationOptions(), **overrides)  # type: ignore[arg-type]

    def primer_from(self, notes: np.ndarray, options: GenerationOptions, source: str = "primer") -> np.ndarray:
        """primer_notes notes (default: the spec's seq_len, or all the seed has) of the seed: its
        last ones, or from where options.primer_from says."""
        notes = note_rules.check(notes, source)
        if len(notes) == 0:
            raise OptionsError(f"{source}: holds no notes to prime the model with")
        wanted = options.primer_notes or self.spec.seq_len
        start = primer_start(options.primer_from)
        if start is None:
            if options.primer_notes and len(notes) < wanted:
                raise OptionsError(f"primer_notes {wanted}: {source} has only {len(notes)} notes", "primer_notes")
            return notes[-wanted:]
        first = _first_note(notes, start, options.primer_from, source)
        primer = notes[first: first + wanted]
        if options.primer_notes and len(primer) < wanted:
            raise OptionsError(f"primer_notes {wanted}: {source} has only {len(primer)} notes from note {first} on",
                               "primer_notes")
        return primer

    def session(self, options: GenerationOptions | None = None, **overrides: object) -> Session:
        """A session of `num_outputs` rows set up by these options (seed, sampling, controls,
        mode), not yet primed."""
        opts = self.options(options, **overrides)
        return Session(self.backend, opts.num_outputs, seed=opts.seed, sampling=opts.sampling(self.spec),
                       window=self.spec.seq_len if opts.mode == "window" else None,
                       controls=opts.requested_controls())

    def _prime(self, session: Session, primer: np.ndarray, opts: GenerationOptions, source: str = "primer") -> None:
        """Prime the session, then give each take its own sampling and controls (opts.takes)."""
        session.prime(primer, source)
        for i, take in enumerate(opts.takes or ()):
            session.set_sampling(opts.take_sampling(i, opts.sampling(self.spec)), [i])
            if take.controls is not None or take.key is not None:
                session.set_controls(control_rules.resolve(primer, opts.requested_controls(i)), [i])

    def rollout(self, seed_notes: np.ndarray, options: GenerationOptions | None = None,
                progress: Progress | None = None, source: str = "primer", **overrides: object) -> Rollout:
        """The primer cut from `seed_notes`, the K continuations [K, n, 4] and the seed used;
        progress(done, n) after every note when given."""
        opts = self.options(options, **overrides)
        primer = self.primer_from(seed_notes, opts, source)
        session = self.session(opts)
        self._prime(session, primer, opts, source)
        if opts.seconds is None:
            return Rollout(primer, session.generate(opts.notes, progress), session.seed)
        notes, lengths = _lasting(session, opts.seconds, opts.notes, progress)
        return Rollout(primer, notes, session.seed, lengths)

    def stream(self, primer: np.ndarray, n: int | None = None,
               options: GenerationOptions | None = None, **overrides: object) -> Iterator[np.ndarray]:
        """Yield notes one at a time: [4] per note, or [K, 4] when num_outputs K > 1."""
        opts = self.options(options, **_notes(overrides, n))
        if opts.seconds is not None:  # a stream ends where its reader stops reading
            raise OptionsError("seconds applies to generate and rollout, not to stream", "seconds")
        session = self.session(opts)
        self._prime(session, self.primer_from(primer, opts), opts)
        for note in session.notes(opts.notes):
            yield note[0] if opts.num_outputs == 1 else note

    def generate(self, primer: np.ndarray, n: int | None = None,
                 options: GenerationOptions | None = None, **overrides: object) -> np.ndarray | list[np.ndarray]:
        """Notes [n, 4], or [K, n, 4] when num_outputs K > 1 (with `seconds`, a list of K takes
        [n_k, 4]: each lasts the time asked for in its own number of notes)."""
        return self.generate_seeded(primer, n, options, **overrides)[0]

    def generate_seeded(self, primer: np.ndarray, n: int | None = None, options: GenerationOptions | None = None,
                        **overrides: object) -> tuple[np.ndarray | list[np.ndarray], int]:
        """(notes, the seed used): with no seed given, the fresh one that repeats this run."""
        done = self.rollout(primer, options, **_notes(overrides, n))
        if done.lengths is not None:
            return (done.takes[0] if len(done.notes) == 1 else done.takes), done.seed
        return (done.notes[0] if len(done.notes) == 1 else done.notes), done.seed


def _notes(overrides: dict[str, object], n: int | None) -> dict[str, object]:
    return overrides if n is None else {**overrides, "notes": n}


def _first_note(notes: np.ndarray, start: tuple[str, float], given: object, source: str) -> int:
    """The index of the note a primer_from start names; OptionsError when it is past the seed."""
    onsets = np.cumsum(notes[:, note_rules.STEP], dtype=np.float64)
    onsets -= onsets[0]  # the seed's first note starts at 0 s
    kind, value = start
    first = int(value) if kind == "note" else int(np.searchsorted(onsets, value - 1e-9))
    if first >= len(notes):
        raise OptionsError(f"primer_from {given!r} is past the end of {source} ({len(notes)} notes, "
                           f"{float(onsets[-1]):.1f} s)", "primer_from")
    return first


def _lasting(session: Session, seconds: float, most: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Step until every row's continuation reaches `seconds` (the onset of its newest note, from
    the primer's last onset) or `most` notes -> (notes [R, n, 4], notes of each row that start
    before `seconds`, at least one). progress(whole seconds the slowest row has, seconds asked)."""
    elapsed = np.zeros(session.rows)
    lengths = np.full(session.rows, -1, np.int64)
    drawn: list[np.ndarray] = []
    total = math.ceil(seconds)
    for i in range(most):
        note = session.step()
        drawn.append(note)
        elapsed += note[:, note_rules.STEP]
        lengths[(lengths < 0) & (elapsed >= seconds)] = max(i, 1)
        if progress is not None:
            progress(min(int(elapsed.min()), total), total)
        if (lengths >= 0).all():
            break
    short = lengths < 0
    if short.any():
        log.warning("stopped at %d notes (the most asked for), %.1f s into the %g s asked for%s",
                    len(drawn), float(elapsed[short].min()), seconds,
                    f" (takes {', '.join(str(k + 1) for k in np.flatnonzero(short))})" if session.rows > 1 else "")
        lengths[short] = len(drawn)
    return np.stack(drawn, axis=1), lengths
