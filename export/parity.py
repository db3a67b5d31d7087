"""Parity of an artifact against eager PyTorch, measured before the artifact is kept.

The cases: random and real notes, B in {1, 3}, T in {1, 25}, zero and random initial states,
and a rollout that carries the state one note at a time, fed with the reference's own greedy
notes (both sides get the same inputs, so one near-tie cannot make the paths diverge).

The criterion is elementwise |a - b| <= atol + rtol * |a| (numpy's allclose, a the eager
value; rtol 1e-5 is numpy's default). Step, duration and h are small and the absolute part
decides. The logits and the cell state c are not bounded: a greedy rollout drives |c| to 40-80
and |logit| to ~30, and float32 rounding, accumulated over hundreds of carried steps, grows with
the magnitude (one unit in the last place at 64 is 7.6e-6; onnxruntime's kernels differ between
CPUs by ~1e-6 of |c|). A fixed 1e-5 there would test the CPU, not the export.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from mpx.runtime.backends import Backend, zero_state
from mpx.runtime.contract import OUTPUTS, Outputs
from mpx.runtime.spec import ModelSpec

from .errors import ParityError

Case = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # label, notes, h0, c0


@dataclasses.dataclass
class ParityReport:
    reference: str
    candidate: str
    max_diff: dict[str, float]      # worst absolute difference per output over every case
    excess: dict[str, float]        # worst |a - b| - rtol * |a| per output: must stay <= atol
    magnitude: dict[str, float]     # largest |a| per output, for scale
    cases: int
    rollout_steps: int
    rtol: float

    def passes(self, atol: float) -> bool:
        return not self.failed(atol)

    def failed(self, atol: float) -> list[str]:
        return [name for name, excess in self.excess.items() if not excess <= atol]

    def describe(self) -> str:
        parts = ", ".join(f"{name} {diff:.1e}" for name, diff in self.max_diff.items())
        parts += f" (largest |cn| {self.magnitude['cn']:.1f})"
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


def greedy_next(outputs: Outputs) -> np.ndarray:
    """The greedy next note [B, 1, 3] from a step's outputs (argmax pitch, clipped regressions)."""
    note = np.stack([np.argmax(outputs.pitch_logits[:, -1], axis=-1),
                     np.maximum(outputs.step[:, -1], 0), np.maximum(outputs.duration[:, -1], 0)], -1)
    return note[:, None, :].astype(np.float32)


def lockstep_rollout(reference: Backend, candidate: Backend, primer: np.ndarray,
                     steps: int) -> Iterator[tuple[Outputs, Outputs]]:
    """Both backends run the primer, then `steps` one-note calls, each carrying its own state;
    both are fed the reference's greedy notes, so a near-tie cannot make the paths diverge."""
    ref_state = cand_state = zero_state(reference.spec, 1)
    x = np.ascontiguousarray(primer[None], np.float32)
    for _ in range(steps + 1):
        ref, cand = reference.step(x, *ref_state), candidate.step(x, *cand_state)
        yield ref, cand
        ref_state, cand_state = ref.state, cand.state
        x = greedy_next(ref)


class _Worst:
    def __init__(self, rtol: float) -> None:
        self.rtol = rtol
        self.diff = {name: 0.0 for name in OUTPUTS}
        self.excess = {name: -np.inf for name in OUTPUTS}
        self.magnitude = {name: 0.0 for name in OUTPUTS}

    def update(self, a: Outputs, b: Outputs, label: str) -> None:
        for name, x, y in zip(OUTPUTS, a, b):
            if x.shape != y.shape:
                raise ParityError(f"{label}: output {name} has shape {list(y.shape)}, "
                                  f"eager gives {list(x.shape)}")
            if not x.size:
                continue
            gap = np.abs(x - y)
            self.diff[name] = max(self.diff[name], float(gap.max()))
            self.excess[name] = max(self.excess[name], float((gap - self.rtol * np.abs(x)).max()))
            self.magnitude[name] = max(self.magnitude[name], float(np.abs(x).max()))


def measure(reference: Backend, candidate: Backend, real: np.ndarray, rollout_steps: int = 128,
            seed: int = 0, rtol: float = 1e-5) -> ParityReport:
    worst = _Worst(rtol)
    cases = 0
    for label, notes, h0, c0 in parity_cases(reference.spec, real, seed):
        worst.update(reference.step(notes, h0, c0), candidate.step(notes, h0, c0), label)
        cases += 1
    primer = real[: reference.spec.seq_len]
    for i, (ref, cand) in enumerate(lockstep_rollout(reference, candidate, primer, rollout_steps)):
        worst.update(ref, cand, f"rollout note {i}")
    return ParityReport(reference.name, candidate.name, worst.diff, worst.excess, worst.magnitude,
                        cases, rollout_steps, rtol)


def check(reference: Backend, candidate: Backend, real: np.ndarray, atol: float, rtol: float,
          target: str, rollout_steps: int = 128) -> ParityReport:
    """Measure parity; raise ParityError (naming the outputs) unless |a - b| <= atol + rtol |a|."""
    report = measure(reference, candidate, real, rollout_steps, rtol=rtol)
    failed = report.failed(atol)
    if failed:
        detail = ", ".join(f"{k} {report.max_diff[k]:.2e} at |{k}| <= {report.magnitude[k]:.3g}" for k in failed)
        raise ParityError(f"{target}: {candidate.name} artifact differs from eager PyTorch beyond "
                          f"--atol {atol:g} + --rtol {rtol:g} x |value| ({detail}); not kept")
    return report
