"""Generation: a Generator wraps any backend, owns the LSTM state, and turns a primer into notes.

The graph samples every note itself (contract v2); the Generator only feeds it: the primer
once, then one call per note with the note it just made, the carried state, and the uniforms
of the portable random stream (runtime/rng.py), so one seed gives the same notes from every
backend and every consumer that follows the protocol (README, "Generation protocol").

Stateful mode (default): O(1) work per note. Window mode is the tutorial's way, re-running the
last `seq_len` notes from a zero state for every note; it is kept as the reference.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Iterator
from typing import Literal

import numpy as np

from .backends import Backend, zero_state
from .contract import FEATURES, UNIFORMS
from .errors import OptionsError
from .rng import SEED_MAX, UniformStream, check_seed
from .spec import ModelSpec, Sampling, per_attribute

log = logging.getLogger(__name__)

Mode = Literal["stateful", "window"]
MODES = ("stateful", "window")
F = len(FEATURES)
MAX_NOTES = 10_000_000
MAX_OUTPUTS = 4096


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
        _integer("--notes", self.notes, 1, MAX_NOTES)
        _integer("--num-outputs", self.num_outputs, 1, MAX_OUTPUTS)
        if self.primer_notes is not None:
            _integer("--primer-notes", self.primer_notes, 1, 100_000)
        if self.mode not in MODES:
            raise OptionsError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
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


def _integer(flag: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        raise OptionsError(f"{flag} must be an integer {low:,}..{high:,}, got {value!r}")


def check_notes(notes: np.ndarray, source: str = "primer") -> np.ndarray:
    """Validate notes [N, 4] (pitch 0..127, step and duration >= 0, velocity 1..127, finite)
    -> float32 copy."""
    arr = np.array(notes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != F:
        raise OptionsError(f"{source}: notes must have shape [N, {F}] ({', '.join(FEATURES)}), "
                           f"got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise OptionsError(f"{source}: notes hold NaN or infinite values")
    if arr.size:
        if arr[:, 0].min() < 0 or arr[:, 0].max() > 127:
            raise OptionsError(f"{source}: pitch must be 0..127")
        if arr[:, 1:3].min() < 0:
            raise OptionsError(f"{source}: step and duration must be >= 0")
        if arr[:, 3].min() < 1 or arr[:, 3].max() > 127:
            raise OptionsError(f"{source}: velocity must be 1..127")
    return arr


class Generator:
    """Generates notes from any backend. Not thread-safe: one generation at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec: ModelSpec = backend.spec

    def options(self, options: GenerationOptions | None = None, **overrides: object) -> GenerationOptions:
        return dataclasses.replace(options or GenerationOptions(), **overrides)  # type: ignore[arg-type]

    def primer_from(self, notes: np.ndarray, options: GenerationOptions, source: str = "primer") -> np.ndarray:
        """The last primer_notes (default: the spec's seq_len, or all of a shorter seed)."""
        notes = check_notes(notes, source)
        if len(notes) == 0:
            raise OptionsError(f"{source}: holds no notes to prime the model with")
        wanted = options.primer_notes or self.spec.seq_len
        if options.primer_notes and len(notes) < wanted:
            raise OptionsError(f"{source}: has {len(notes)} notes, fewer than --primer-notes {wanted}")
        return notes[-wanted:]

    def stream(self, primer: np.ndarray, n: int | None = None,
               options: GenerationOptions | None = None, **overrides: object) -> Iterator[np.ndarray]:
        """Yield notes one at a time: [4] per note, or [K, 4] when num_outputs K > 1."""
        opts, seed, steps = self._rollout(primer, n, options, overrides)
        for note in steps:
            yield note[0] if opts.num_outputs == 1 else note

    def generate(self, primer: np.ndarray, n: int | None = None,
                 options: GenerationOptions | None = None, **overrides: object) -> np.ndarray:
        """Notes [n, 4], or [K, n, 4] when num_outputs K > 1."""
        return self.generate_seeded(primer, n, options, **overrides)[0]

    def generate_seeded(self, primer: np.ndarray, n: int | None = None,
                        options: GenerationOptions | None = None, **overrides: object) -> tuple[np.ndarray, int]:
        """(notes, the seed used): with no seed given, the fresh one that repeats this run."""
        opts, seed, steps = self._rollout(primer, n, options, overrides)
        out = np.empty((opts.num_outputs, opts.notes, F), np.float32)
        for i, note in enumerate(steps):
            out[:, i] = note
        return (out[0] if opts.num_outputs == 1 else out), seed

    def _rollout(self, primer: np.ndarray, n: int | None, options: GenerationOptions | None,
                 overrides: dict[str, object]) -> tuple[GenerationOptions, int, Iterator[np.ndarray]]:
        if n is not None:
            overrides = {**overrides, "notes": n}
        opts = self.options(options, **overrides)
        primer = self.primer_from(primer, opts)
        seed = opts.seed if opts.seed is not None else secrets.randbelow(SEED_MAX + 1)
        steps = self._stateful if opts.mode == "stateful" else self._window
        return opts, seed, steps(primer, opts, seed)

    def _inputs(self, opts: GenerationOptions, seed: int) -> tuple[UniformStream, np.ndarray, np.ndarray]:
        sampling = opts.sampling(self.spec)
        return (UniformStream(seed, opts.num_outputs), np.array(sampling.temperature, np.float32),
                np.array(sampling.top_p, np.float32))

    def _stateful(self, primer: np.ndarray, opts: GenerationOptions, seed: int) -> Iterator[np.ndarray]:
        uniforms, temperature, top_p = self._inputs(opts, seed)
        x, h, c = self._primed(primer, opts.num_outputs, temperature, top_p)
        for _ in range(opts.notes):
            note, h, c, _ = self.backend.call(x, h, c, uniforms.next(), temperature, top_p)
            yield note
            x = note[:, None, :]

    def _primed(self, primer: np.ndarray, k: int, temperature: np.ndarray,
                top_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first input, h, c) of K streams. The primer's state is the same for every stream, so
        all but its last note run once (B = 1) and the state is repeated K times; the last note
        runs with B = K, so each stream samples its own first note. (K = 1: one call.)"""
        h, c = zero_state(self.spec, 1)
        if k > 1 and len(primer) > 1:
            unused = np.zeros((1, UNIFORMS), np.float32)  # the note this call samples is not kept
            out = self.backend.call(np.ascontiguousarray(primer[None, :-1]), h, c, unused, temperature, top_p)
            h, c = np.repeat(out.hn, k, axis=1), np.repeat(out.cn, k, axis=1)
            primer = primer[-1:]
        else:
            h, c = np.repeat(h, k, axis=1), np.repeat(c, k, axis=1)
        return np.repeat(primer[None], k, axis=0), h, c

    def _window(self, primer: np.ndarray, opts: GenerationOptions, seed: int) -> Iterator[np.ndarray]:
        uniforms, temperature, top_p = self._inputs(opts, seed)
        k, width = opts.num_outputs, self.spec.seq_len
        h0, c0 = zero_state(self.spec, k)
        window = np.repeat(primer[None, -width:], k, axis=0)
        for _ in range(opts.notes):
            note = self.backend.call(window, h0, c0, uniforms.next(), temperature, top_p).next_note
            yield note
            keep = window[:, 1:] if window.shape[1] >= width else window
            window = np.concatenate([keep, note[:, None, :]], axis=1)
