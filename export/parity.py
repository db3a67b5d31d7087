"""Parity of an artifact against eager PyTorch, measured before the artifact is kept.

The cases: random and real notes, B in {1, 3}, T in {1, 25}, zero and random initial states,
several sampling settings (the model's defaults, greedy, a mixed one, and one per row), controls
set (the notes' own summaries, some not given) and unset, attributes of the next note given (the
real ones, and some), and a rollout that carries the state one note at a time, both sides fed
the reference's own drawn notes with the same uniforms (so one near-tie cannot make the paths
diverge).

The criterion for the tensors is elementwise |a - b| <= atol + rtol * |a| (numpy's allclose, a
the eager value; rtol 1e-5 is numpy's default): the logits and the cell state c are not bounded
(a rollout drives |c| to 40-80), and float32 rounding, accumulated over hundreds of carried
steps, grows with the magnitude; onnxruntime's kernels differ between CPUs by ~1e-6 of |c|.

The sampled note is held to more: the same pitch and velocity, and times within the same bound.
The only disagreement forgiven is a near-tie: a uniform that lies within NEAR_TIE of a boundary
of the cumulative distribution, where float rounding alone decides the bin. Whether a draw is a
near-tie is decided by the sampling rule stated in numpy (runtime/sampling.py), computed in
float64 from the reference's logits; near-ties are counted in the report. A note is one chain
of draws (spec `order`): after a near-tie drew another bin, the later attributes of that row are
conditioned on different bins, so their draws and the last row of their logits are not compared
(counted with the near-ties).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from mpx.runtime import bins, controls as ctl, notes as note_rules, sampling
from mpx.runtime.backends import Backend, zero_state
from mpx.runtime.contract import ATTRIBUTES, OUTPUTS, UNIFORMS, Outputs
from mpx.runtime.session import Session
from mpx.runtime.spec import ModelSpec

from .errors import ParityError

A = len(ATTRIBUTES)
NEAR_TIE = 1e-5
DISCRETE = (0, 3)  # pitch and velocity: the same integer or a different bin
SETTINGS = {  # label -> (temperature, top_p), beside the model's own defaults
    "greedy": ((0.0,) * A, (1.0,) * A),
    "mixed": ((1.3, 0.0, 0.7, 0.5), (1.0, 0.8, 0.9, 0.6)),
}
PER_ROW = ((1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0), (1.3, 0.0, 0.7, 0.5))  # row r takes PER_ROW[r % 3]


@dataclasses.dataclass(frozen=True)
class Inputs:
    label: str
    notes: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    uniforms: np.ndarray
    temperature: np.ndarray
    top_p: np.ndarray
    controls: np.ndarray
    given: np.ndarray

    def args(self) -> tuple[np.ndarray, ...]:
        return (self.notes, self.h0, self.c0, self.uniforms, self.temperature, self.top_p, self.controls,
                self.given)


@dataclasses.dataclass
class ParityReport:
    reference: str
    candidate: str
    max_diff: dict[str, float]      # worst absolute difference per output over every case
    excess: dict[str, float]        # worst |a - b| - rtol * |a| per output: must stay <= atol
    magnitude: dict[str, float]     # largest |a| per output, for scale
    near_ties: int                  # sampled values that differ at a near-tie (forgiven)
    draws: int                      # sampled values compared
    cases: int
    rollout_steps: int
    rtol: float

    def passes(self, atol: float) -> bool:
        return not self.failed(atol)

    def failed(self, atol: float) -> list[str]:
        return [name for name, excess in self.excess.items() if not excess <= atol]

    def describe(self) -> str:
        parts = ", ".join(f"{name} {diff:.1e}" for name, diff in self.max_diff.items())
        return (f"{self.candidate} vs {self.reference}: max |diff| {parts} (largest |cn| "
                f"{self.magnitude['cn']:.1f}); sampled notes identical in {self.draws - self.near_ties} "
                f"of {self.draws} draws, {self.near_ties} near-ties ({self.cases} cases + "
                f"{self.rollout_steps}-note rollout)")


def real_windows(real: np.ndarray, rng_: np.random.Generator, batch: int, time: int) -> np.ndarray:
    starts = rng_.integers(0, max(1, len(real) - time), batch)
    return np.stack([real[s:s + time] for s in starts]).astype(np.float32)


def parity_cases(spec: ModelSpec, real: np.ndarray, seed: int = 0) -> Iterator[Inputs]:
    generator = np.random.default_rng(seed)
    settings = {"defaults": (spec.sampling.temperature, spec.sampling.top_p), **SETTINGS, "per-row": None}
    for batch in (1, 3):
        for time in (1, 25):
            for label, setting in settings.items():
                if setting is None:
                    t = np.array([PER_ROW[r % 3] for r in range(batch)], np.float32)
                    p = np.array([SETTINGS["mixed"][1] if r % 2 else (1.0,) * A for r in range(batch)], np.float32)
                else:
                    t, p = (np.tile(np.array(v, np.float32), (batch, 1)) for v in setting)
                u = generator.random((batch, UNIFORMS)).astype(np.float32)
                windows = real_windows(real, generator, batch, time + 1)
                # controls: the notes' own summaries with some not given (set), or none (unset);
                # given: nothing, or the real next note (teacher forcing), or some attributes
                controls = np.stack([ctl.summaries(w) for w in windows]).astype(np.float32)
                controls[generator.random(controls.shape) < 0.3] = ctl.NOT_GIVEN
                given = np.full((batch, A), -1.0, np.float32)
                if label == "mixed":
                    given = windows[:, -1].copy()
                elif label == "per-row":
                    given = np.where(generator.random((batch, A)) < 0.5, windows[:, -1], given).astype(np.float32)
                yield Inputs(f"real B={batch} T={time} {label}, controls set", windows[:, :-1],
                             *zero_state(spec, batch), u, t, p, controls, given)
                state = [generator.normal(0, 0.5, (spec.layers, batch, spec.hidden)).astype(np.float32)
                         for _ in range(2)]
                yield Inputs(f"random B={batch} T={time} {label}, controls unset",
                             note_rules.random(generator, batch, time), *state, u, t, p, ctl.unset(batch),
                             np.full((batch, A), -1.0, np.float32))


def lockstep_rollout(reference: Backend, candidate: Backend, primer: np.ndarray, steps: int,
                     seed: int = 0) -> Iterator[tuple[Inputs, Outputs, Outputs]]:
    """Both backends run the primer, then `steps` one-note calls, each carrying its own state,
    both fed the reference's sampled notes and the same uniforms (the model's default sampling)."""
    ref = Session(reference, seed=seed)
    cand = Session(candidate, seed=seed, sampling=reference.spec.sampling)
    ref.prime(primer)
    cand.prime(primer)
    for i in range(steps + 1):
        note = ref.step()
        cand.step(feed_back=False)
        cand.append(note)  # the reference's note, so one near-tie cannot make the paths diverge
        (inputs, ref_out), (_, cand_out) = ref.last, cand.last  # type: ignore[misc]
        yield Inputs(f"rollout note {i}", *inputs), ref_out, cand_out


class _Worst:
    def __init__(self, spec: ModelSpec, rtol: float) -> None:
        self.counts = bins.counts(spec.config)
        self.chain = [ATTRIBUTES.index(name) for name in spec.config.order]
        self.rtol = rtol
        self.diff = {name: 0.0 for name in OUTPUTS}
        self.excess = {name: -np.inf for name in OUTPUTS}
        self.magnitude = {name: 0.0 for name in OUTPUTS}
        self.near_ties = self.draws = 0

    def update(self, inputs: Inputs, a: Outputs, b: Outputs) -> None:
        for name, x, y in zip(OUTPUTS, a, b):
            if x.shape != y.shape:
                raise ParityError(f"{inputs.label}: output {name} has shape {list(y.shape)}, "
                                  f"eager gives {list(x.shape)}")
        agree, after_tie = self._agreeing_draws(inputs, a, b)
        for name, x, y in zip(OUTPUTS, a, b):
            gap = np.abs(x - y)
            if name == "next_note":
                gap = np.where(agree, gap, 0.0)
            elif name == "logits":  # the last row of attributes drawn after a near-tie: other bins before them
                gap[:, -1] = np.where(after_tie[..., None], 0.0, gap[:, -1])
            self.diff[name] = max(self.diff[name], float(gap.max()))
            self.excess[name] = max(self.excess[name], float((gap - self.rtol * np.abs(x)).max()))
            self.magnitude[name] = max(self.magnitude[name], float(np.abs(x).max()))

    def _agreeing_draws(self, inputs: Inputs, a: Outputs, b: Outputs) -> tuple[np.ndarray, np.ndarray]:
        """([B, 4] which drawn values took the same bin, [B, 4] which come after a near-tie in
        their row's chain); a different bin is only forgiven at a near-tie or after one."""
        ref, cand = a.next_note.astype(np.float64), b.next_note.astype(np.float64)
        differs = np.abs(ref - cand) > 1e-3 * np.maximum(np.abs(ref), 1e-2)  # another bin: >= ~10% apart
        differs[:, list(DISCRETE)] = ref[:, list(DISCRETE)] != cand[:, list(DISCRETE)]
        after_tie = np.zeros_like(differs)
        self.draws += differs.size
        if differs.any():
            margin = sampling.margin(a.logits[:, -1], inputs.uniforms, inputs.temperature, inputs.top_p, self.counts)
            tied = differs & (margin < NEAR_TIE)
            for i, attribute in enumerate(self.chain[:-1]):  # every later link of a tied one
                after_tie[:, self.chain[i + 1:]] |= (tied[:, attribute] | after_tie[:, attribute])[:, None]
            hard = differs & ~tied & ~after_tie
            if hard.any():
                row, col = (int(i) for i in np.argwhere(hard)[0])
                raise ParityError(f"{inputs.label}: sampled {ATTRIBUTES[col]} {cand[row, col]:g}, eager "
                                  f"samples {ref[row, col]:g} from the same uniforms (margin "
                                  f"{margin[row, col]:.1e}, not a near-tie)")
            self.near_ties += int((differs | after_tie).sum())
        return ~(differs | after_tie), after_tie


def measure(reference: Backend, candidate: Backend, real: np.ndarray, rollout_steps: int = 128,
            seed: int = 0, rtol: float = 1e-5,
            progress: Callable[[int, int], None] | None = None) -> ParityReport:
    """Both backends on every parity case, then a lock-step rollout; `progress(done, total)`
    after each call pair."""
    worst = _Worst(reference.spec, rtol)
    cases = list(parity_cases(reference.spec, real, seed))
    total = len(cases) + rollout_steps + 1
    tick = progress or (lambda done, total: None)
    for done, inputs in enumerate(cases, 1):
        worst.update(inputs, reference.call(*inputs.args()), candidate.call(*inputs.args()))
        tick(done, total)
    primer = real[: reference.spec.seq_len]
    for step, (inputs, ref, cand) in enumerate(lockstep_rollout(reference, candidate, primer, rollout_steps, seed), 1):
        worst.update(inputs, ref, cand)
        tick(len(cases) + step, total)
    return ParityReport(reference.name, candidate.name, worst.diff, worst.excess, worst.magnitude,
                        worst.near_ties, worst.draws, len(cases), rollout_steps, rtol)


def check(reference: Backend, candidate: Backend, real: np.ndarray, atol: float, rtol: float,
          target: str, rollout_steps: int = 128,
          progress: Callable[[int, int], None] | None = None) -> ParityReport:
    """Measure parity; raise ParityError (naming the outputs) unless |a - b| <= atol + rtol |a|
    and every sampled note agrees but at near-ties."""
    try:
        report = measure(reference, candidate, real, rollout_steps, rtol=rtol, progress=progress)
    except ParityError as exc:
        raise ParityError(f"{target}: {candidate.name} artifact differs from eager PyTorch ({exc}); not kept") from None
    failed = report.failed(atol)
    if failed:
        detail = ", ".join(f"{k} {report.max_diff[k]:.2e} at |{k}| <= {report.magnitude[k]:.3g}" for k in failed)
        raise ParityError(f"{target}: {candidate.name} artifact differs from eager PyTorch beyond "
                          f"--atol {atol:g} + --rtol {rtol:g} x |value| ({detail}); not kept")
    return report
