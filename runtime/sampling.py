"""One numpy sampler for every backend: the same seed gives the same notes from any artifact.

Sampling stays outside the graphs (README, "Graph contract"): the graphs return logits and
regressions; here they become notes. Pitch comes back as the raw MIDI number (the graph does
its own input encoding); step and duration are clipped at 0.

Timing. The step and duration heads are regressions: trained with squared error they predict
the conditional mean, which is never the near-zero step of a chord note nor the long one of a
phrase end. Fed back note after note, mean-valued timing drifts into a slow, even legato (the
median generated step came out 3-12x the seed's). So when the model's spec carries timing
quantiles (ratios target / prediction measured on held-out pieces, see mpx.train.calibrate),
sampled generation draws each step and duration as prediction x a ratio drawn from them: the
residual spread of real performances around the model's prediction. Greedy generation
(temperature 0) and timing="mean" keep the point predictions.
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Literal

import numpy as np

from .errors import OptionsError

Mode = Literal["stateful", "window"]
MODES = ("stateful", "window")
TIMINGS = ("sample", "mean")

# Chosen on the bundled model by the generation checks in the model card (distinct pitches,
# repeated-pitch runs, very short notes, tempo versus the seed): see benchmarks/sampling_sweep.py.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """Every runtime option of generation, checked in one place (validate)."""

    notes: int = 256                    # notes to generate per output
    temperature: float = DEFAULT_TEMPERATURE  # 0 = greedy
    top_k: int = 0                      # 0 = off
    top_p: float = DEFAULT_TOP_P        # 1 = off
    seed: int | None = None             # None = fresh entropy
    mode: Mode = "stateful"
    num_outputs: int = 1                # K variations in one batched pass
    primer_notes: int | None = None     # None = the spec's seq_len
    timing: str = "sample"              # "sample" (from the spec's quantiles) or "mean"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        def bad(name: str, value: object, allowed: str) -> OptionsError:
            return OptionsError(f"{name} must be {allowed}, got {value!r}")

        if not isinstance(self.notes, int) or self.notes < 1:
            raise bad("notes", self.notes, "a positive integer")
        if not (np.isfinite(self.temperature) and self.temperature >= 0):
            raise bad("temperature", self.temperature, ">= 0 (0 = greedy)")
        if not isinstance(self.top_k, int) or not 0 <= self.top_k <= 128:
            raise bad("top_k", self.top_k, "0..128 (0 = off)")
        if not (np.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise bad("top_p", self.top_p, "in (0, 1] (1 = off)")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise bad("seed", self.seed, "a non-negative integer")
        if self.mode not in MODES:
            raise bad("mode", self.mode, " or ".join(MODES))
        if not isinstance(self.num_outputs, int) or not 1 <= self.num_outputs <= 4096:
            raise bad("num_outputs", self.num_outputs, "1..4096")
        if self.timing not in TIMINGS:
            raise bad("timing", self.timing, " or ".join(TIMINGS))
        if self.primer_notes is not None and (
                not isinstance(self.primer_notes, int) or self.primer_notes < 1):
            raise bad("primer_notes", self.primer_notes, "a positive integer")


class Sampler:
    """Turns one position of graph outputs into the next note for each of B streams."""

    def __init__(self, options: GenerationOptions,
                 timing: dict[str, list[float]] | None = None) -> None:
        self.temperature = float(options.temperature)
        self.top_k = int(options.top_k)
        self.top_p = float(options.top_p)
        self.rng = np.random.default_rng(options.seed)
        self.timing = None
        if timing and options.timing == "sample" and self.temperature > 0:
            # per quantity: bin edges over the prediction [E], ratio quantiles per bin [E + 1, Q];
            # as Python lists for the one-stream path, as arrays for the batch path
            self.timing_lists = [(list(timing[k]["edges"]), [list(r) for r in timing[k]["ratios"]])
                                 for k in ("step", "duration")]
            self.timing = [(np.asarray(edges), np.asarray(ratios)) for edges, ratios in self.timing_lists]

    def __call__(self, pitch_logits: np.ndarray, step: np.ndarray,
                 duration: np.ndarray) -> np.ndarray:
        """pitch_logits [B, 128], step [B], duration [B] -> notes float32 [B, 3]."""
        if len(pitch_logits) == 1:
            return self._one_note(pitch_logits, float(step[0]), float(duration[0]))
        out = np.empty((pitch_logits.shape[0], 3), dtype=np.float32)
        out[:, 0] = self.pitch(pitch_logits)
        out[:, 1] = np.maximum(step, 0.0)
        out[:, 2] = np.maximum(duration, 0.0)
        if self.timing is not None:
            u = self.rng.random((len(out), 2))
            for column, (edges, ratios) in enumerate(self.timing, start=1):
                out[:, column] *= self._ratio(out[:, column], u[:, column - 1], edges, ratios)
        return out

    def _one_note(self, logits: np.ndarray, step: float, duration: float) -> np.ndarray:
        """The B = 1 path of __call__ in Python floats: the per-note hot path of one stream.
        It draws exactly what the batch path draws from the same uniforms (tested)."""
        pitch = self._one(logits[0]) if self.temperature else int(np.argmax(logits[0]))
        step, duration = max(step, 0.0), max(duration, 0.0)
        if self.timing is not None:
            u_step, u_duration = self.rng.random(2)
            step *= _ratio_one(step, u_step, *self.timing_lists[0])
            duration *= _ratio_one(duration, u_duration, *self.timing_lists[1])
        return np.array([[pitch, step, duration]], dtype=np.float32)

    @staticmethod
    def _ratio(prediction: np.ndarray, u: np.ndarray, edges: np.ndarray, ratios: np.ndarray) -> np.ndarray:
        """A ratio drawn (by the uniforms u) from the table of each prediction's bin."""
        table = ratios[np.searchsorted(edges, prediction)]        # [B, Q]
        position = u * (table.shape[1] - 1)
        low = np.minimum(position.astype(np.int64), table.shape[1] - 2)
        frac = position - low
        rows = np.arange(len(u))
        return table[rows, low] * (1 - frac) + table[rows, low + 1] * frac

    def pitch(self, logits: np.ndarray) -> np.ndarray:
        """Pitch per row of logits [B, 128]: argmax when greedy, else an inverse-CDF draw over
        the pitches ranked by probability, cut to the nucleus (top_p) and to top_k.

        One stream (B = 1) takes a 1-D path: it is the per-note hot path of generation, and
        numpy's 1-D calls cost a fraction of their 2-D forms at this size. Both paths compute
        the same draw from the same numbers.
        """
        if self.temperature == 0.0:
            return np.argmax(logits, axis=-1)
        if len(logits) == 1:
            return np.array([self._one(logits[0])])
        probs = self._probs(logits)
        order = np.argsort(probs, axis=-1)[:, ::-1]          # most likely first
        cdf = np.cumsum(np.sort(probs, axis=-1)[:, ::-1], axis=-1)
        kept = np.full(len(cdf), cdf.shape[1])
        if self.top_p < 1.0:  # the smallest prefix whose mass reaches top_p (>= 1 pitch)
            kept = (cdf < self.top_p * cdf[:, -1:]).sum(axis=-1) + 1
        if self.top_k:
            kept = np.minimum(kept, self.top_k)
        rows = np.arange(len(cdf))
        u = self.rng.random(len(cdf)) * cdf[rows, kept - 1]
        return order[rows, (cdf <= u[:, None]).sum(axis=-1)]

    def _one(self, logits: np.ndarray) -> int:
        order = np.argsort(logits)[::-1]                      # most likely first
        ranked = logits[order].astype(np.float64)
        ranked -= ranked[0]
        if self.temperature != 1.0:
            ranked /= self.temperature
        cdf = np.cumsum(np.exp(ranked))
        kept = len(cdf)
        if self.top_p < 1.0:
            kept = int(cdf.searchsorted(self.top_p * cdf[-1])) + 1
        if self.top_k:
            kept = min(kept, self.top_k)
        u = self.rng.random() * cdf[kept - 1]
        return int(order[cdf.searchsorted(u, side="right")])

    def _probs(self, logits: np.ndarray) -> np.ndarray:
        z = logits.astype(np.float64)
        z -= z.max(axis=-1, keepdims=True)
        return np.exp(z / self.temperature)


def _ratio_one(prediction: float, u: float, edges: list[float], ratios: list[list[float]]) -> float:
    """Sampler._ratio for one prediction, in Python floats."""
    table = ratios[bisect.bisect_left(edges, prediction)]
    position = u * (len(table) - 1)
    low = min(int(position), len(table) - 2)
    frac = position - low
    return table[low] * (1 - frac) + table[low + 1] * frac
