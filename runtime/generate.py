"""Generation: a Generator wraps any backend, owns the LSTM state, and turns a primer into notes.

Stateful mode (default) runs the primer through the graph once, then one T=1 call per note
carrying (h, c): O(1) work per note. Window mode is the tutorial's way, re-running the last
`seq_len` notes from a zero state for every note; it is kept as the reference.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import numpy as np

from .backends import Backend, zero_state
from .errors import OptionsError
from .sampling import GenerationOptions, Sampler
from .spec import ModelSpec

log = logging.getLogger(__name__)


def check_notes(notes: np.ndarray, source: str = "primer") -> np.ndarray:
    """Validate notes [N, 3] (pitch 0..127, step and duration >= 0, finite) -> float32 copy."""
    arr = np.array(notes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise OptionsError(f"{source}: notes must have shape [N, 3], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise OptionsError(f"{source}: notes hold NaN or infinite values")
    if arr.size and (arr[:, 0].min() < 0 or arr[:, 0].max() > 127):
        raise OptionsError(f"{source}: pitch must be 0..127")
    if arr.size and arr[:, 1:].min() < 0:
        raise OptionsError(f"{source}: step and duration must be >= 0")
    return arr


class Generator:
    """Generates notes from any backend. Not thread-safe: one generation at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec: ModelSpec = backend.spec

    def options(self, options: GenerationOptions | None = None, **overrides: object) -> GenerationOptions:
        return dataclasses.replace(options or GenerationOptions(), **overrides)  # type: ignore[arg-type]

    def primer_from(self, notes: np.ndarray, options: GenerationOptions, source: str = "primer") -> np.ndarray:
        """The last primer_notes (default: the spec's seq_len) notes of `notes`."""
        notes = check_notes(notes, source)
        wanted = options.primer_notes or self.spec.seq_len
        if len(notes) < wanted:
            raise OptionsError(f"{source}: has {len(notes)} notes, the primer needs {wanted} "
                               "(pass a longer seed or a smaller --primer-notes)")
        return notes[-wanted:]

    def stream(self, primer: np.ndarray, n: int | None = None,
               options: GenerationOptions | None = None, **overrides: object) -> Iterator[np.ndarray]:
        """Yield notes one at a time: [3] per note, or [K, 3] when num_outputs K > 1."""
        opts, steps = self._rollout(primer, n, options, overrides)
        for note in steps:
            yield note[0] if opts.num_outputs == 1 else note

    def generate(self, primer: np.ndarray, n: int | None = None,
                 options: GenerationOptions | None = None, **overrides: object) -> np.ndarray:
        """Notes [n, 3], or [K, n, 3] when num_outputs K > 1."""
        opts, steps = self._rollout(primer, n, options, overrides)
        out = np.stack(list(steps), axis=1)  # [K, n, 3]
        return out[0] if opts.num_outputs == 1 else out

    def _rollout(self, primer: np.ndarray, n: int | None, options: GenerationOptions | None,
                 overrides: dict[str, object]) -> tuple[GenerationOptions, Iterator[np.ndarray]]:
        if n is not None:
            overrides = {**overrides, "notes": n}
        opts = self.options(options, **overrides)
        primer = self.primer_from(primer, opts)
        steps = self._stateful if opts.mode == "stateful" else self._window
        return opts, steps(primer, opts)

    def _stateful(self, primer: np.ndarray, opts: GenerationOptions) -> Iterator[np.ndarray]:
        k = opts.num_outputs
        sample = Sampler(opts, self.spec.timing)
        # The primer runs once; its state and last outputs are shared by the K streams.
        out = self.backend.step(primer[None], *zero_state(self.spec, 1))
        h, c = np.repeat(out.hn, k, axis=1), np.repeat(out.cn, k, axis=1)
        last = [np.repeat(a[:, -1], k, axis=0) for a in (out.pitch_logits, out.step, out.duration)]
        for i in range(opts.notes):
            note = sample(*last)
            yield note
            if i + 1 < opts.notes:
                out = self.backend.step(note[:, None, :], h, c)
                h, c = out.hn, out.cn
                last = [out.pitch_logits[:, -1], out.step[:, -1], out.duration[:, -1]]

    def _window(self, primer: np.ndarray, opts: GenerationOptions) -> Iterator[np.ndarray]:
        k, width = opts.num_outputs, self.spec.seq_len
        sample = Sampler(opts, self.spec.timing)
        h0, c0 = zero_state(self.spec, k)
        window = np.repeat(primer[None, -width:], k, axis=0)
        for _ in range(opts.notes):
            out = self.backend.step(window, h0, c0)
            note = sample(out.pitch_logits[:, -1], out.step[:, -1], out.duration[:, -1])
            yield note
            keep = window[:, 1:] if window.shape[1] >= width else window
            window = np.concatenate([keep, note[:, None, :]], axis=1)
