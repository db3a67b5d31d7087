"""Parity of an artifact against eager PyTorch, measured before the artifact is kept.

The cases: random and real notes, B in {1, 3}, T in {1, 25}, zero and random initial states,
and a rollout that carries the state one note at a time, fed with the reference's own greedy
notes (both sides get the same inputs, so one near-tie cannot make the paths diverge).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from mpx.runtime.backends import Backend, zero_state
from mpx.runtime.spec import OUTPUTS, ModelSpec

from .errors import ParityError

Case = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # label, notes, h0, c0


@dataclasses.dataclass
class ParityReport:
    reference: str
    candidate: str
    max_diff: dict[str, float]      # worst absolute difference per output over every case
    cases: int
    rollout_steps: int

    @property
    def worst(self) -> float:
        return max(self.max_diff.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {diff:.1e}" for name, diff in self.max_diff.items())
        return (f"{self.candidate} vs {self.reference}: max |diff| {parts} "
                f"({self.cases} cases + {self.rollout_steps}-note rollout)")


def random_notes(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    notes = np.empty((batch, time, 3), np.float32)
    notes[..., 0] = rng.integers(0, 128, (batch, time))
    notes[..., 1] = rng.exponential(0.15, (batch, time))
    notes[..., 2] = rng.exponential(0.4, (batch, time))
    return notes


def real_windows(real: np.ndarray, rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    starts = rng.integers(0, max(1, len(real) - time), batch)
    return np.stack([real[s:s + time] for s in starts]).astype(np.float32)


def parity_cases(spec: ModelSpec, real: np.ndarray, seed: int = 0) -> Iterator[Case]:
    rng = np.random.default_rng(seed)
    for batch in (1, 3):
        for time in (1, 25):
            h0, c0 = zero_state(spec, batch)
            yield f"real B={batch} T={time}", real_windows(real, rng, batch, time), h0, c0
            state = [rng.normal(0, 0.5, h0.shape).astype(np.float32) for _ in range(2)]
            yield f"random B={batch} T={time}", random_notes(rng, batch, time), *state


def _update(worst: dict[str, float], a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...],
            label: str) -> None:
    for name, x, y in zip(OUTPUTS, a, b):
        if x.shape != y.shape:
            raise ParityError(f"{label}: output {name} has shape {list(y.shape)}, "
                              f"eager gives {list(x.shape)}")
        worst[name] = max(worst[name], float(np.max(np.abs(x - y))) if x.size else 0.0)


def greedy_next(outputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """The greedy next note [B, 1, 3] from a step's outputs (argmax pitch, clipped regressions)."""
    logits, step, duration = outputs[0][:, -1], outputs[1][:, -1], outputs[2][:, -1]
    note = np.stack([np.argmax(logits, axis=-1), np.maximum(step, 0), np.maximum(duration, 0)], -1)
    return note[:, None, :].astype(np.float32)


def measure(reference: Backend, candidate: Backend, real: np.ndarray, rollout_steps: int = 128,
            seed: int = 0) -> ParityReport:
    worst = {name: 0.0 for name in OUTPUTS}
    cases = 0
    for label, notes, h0, c0 in parity_cases(reference.spec, real, seed):
        _update(worst, reference.step(notes, h0, c0), candidate.step(notes, h0, c0), label)
        cases += 1
    ref_state = cand_state = zero_state(reference.spec, 1)
    x = real[None, : reference.spec.seq_len].astype(np.float32)
    for i in range(rollout_steps + 1):  # the primer, then one note per call, state carried
        ref = reference.step(x, *ref_state)
        cand = candidate.step(x, *cand_state)
        _update(worst, ref, cand, f"rollout note {i}")
        ref_state, cand_state = ref[3:], cand[3:]
        x = greedy_next(ref)
    return ParityReport(reference.name, candidate.name, worst, cases, rollout_steps)


def check(reference: Backend, candidate: Backend, real: np.ndarray, atol: float,
          target: str, rollout_steps: int = 128) -> ParityReport:
    """Measure parity and raise ParityError (naming the outputs) when it exceeds atol."""
    report = measure(reference, candidate, real, rollout_steps)
    failed = {k: v for k, v in report.max_diff.items() if not v <= atol}
    if failed:
        detail = ", ".join(f"{k} {v:.2e}" for k, v in failed.items())
        raise ParityError(f"{target}: {candidate.name} artifact differs from eager "
                          f"PyTorch beyond --atol {atol:g} ({detail}); not kept")
    return report
