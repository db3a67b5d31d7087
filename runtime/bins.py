"""The bins of every note attribute: how a value maps to its bin and a bin back to a value.

Every attribute is predicted as a categorical distribution over bins (contract v3):
- pitch: 128 bins, one per MIDI pitch;
- step and duration: bins uniform in z = log(t + 0.01) from 0 s to the config's maximum, so
  they are ~10% wide in the musical range and the first step bin (0 to ~1 ms) is a chord;
- velocity: bins of equal width over 1..127.
The graph decodes a chosen bin k and a uniform v in [0, 1) with one formula for all four:
    z = (k + v * within) * scale + shift
    value = exp(z) - 0.01 (step, duration) or floor(z) (pitch, velocity)
`constants()` gives (within, scale, shift) to the model; `value()` is the numpy form of the
graph's decode (tests, docs). A value maps to its bin by comparisons with float32 thresholds
(`thresholds()`, `index()`) that every consumer makes alike, since the graph bins values too
(the attributes of the next note that a caller gives). Contract v2 binned by floor((z - shift)
/ scale); the two rules differ only for values within float rounding of a bin edge (none of
ASAP's 3.3M training and validation notes: docs/v3-model.md).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import ModelConfig
from .contract import ATTRIBUTES, VOCAB

TIME_OFFSET = 0.01  # seconds: log(t + 0.01) tells a chord (t ~ 0) from a run (t ~ 0.05)
VELOCITY_RANGE = (1.0, 128.0)  # velocities 1..127 as a half-open interval


@dataclasses.dataclass(frozen=True)
class AttributeBins:
    name: str
    count: int
    scale: float    # z per bin
    shift: float    # z at the start of bin 0
    within: float   # 1 when a value spreads over its bin, 0 when a bin is one value (pitch)
    time: bool      # value = exp(z) - 0.01 (True) or floor(z)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Values of this attribute -> their bins (int64): the number of thresholds at or below
        the value (compared as float32), so 0..count-1; the graph bins a given value alike."""
        return np.searchsorted(self.thresholds(), np.asarray(values, np.float32), side="right").astype(np.int64)

    def thresholds(self) -> np.ndarray:
        """The count - 1 inner bin edges as float32, where bins 1..count-1 start: comparisons of
        float32 values with these are exact, so every consumer bins a value alike. Pitch: k - 0.5
        (a pitch rounds half up)."""
        z = self.shift + self.scale * np.arange(1, self.count, dtype=np.float64)
        if self.time:
            return (np.exp(z) - TIME_OFFSET).astype(np.float32)
        return (z - 0.5 if not self.within else z).astype(np.float32)

    def value(self, index: np.ndarray, frac: np.ndarray | float = 0.5) -> np.ndarray:
        """The graph's decode in numpy: a bin and a uniform in [0, 1) -> the attribute's value."""
        z = (np.asarray(index, np.float64) + np.asarray(frac) * self.within) * self.scale + self.shift
        out = np.exp(z) - TIME_OFFSET if self.time else np.floor(z)
        return np.maximum(out, 0.0)

    def edges(self) -> list[float]:
        """Bin edges in the attribute's units (seconds, velocity), count + 1 of them."""
        z = self.shift + self.scale * np.arange(self.count + 1)
        return [round(float(e), 6) for e in (np.exp(z) - TIME_OFFSET if self.time else z)]


def _time(name: str, count: int, maximum: float) -> AttributeBins:
    low, high = math.log(TIME_OFFSET), math.log(maximum + TIME_OFFSET)
    return AttributeBins(name, count, (high - low) / count, low, 1.0, True)


def of(config: ModelConfig) -> tuple[AttributeBins, ...]:
    """The four attributes' bins, in the contract's order."""
    low, high = VELOCITY_RANGE
    bins = (AttributeBins("pitch", VOCAB, 1.0, 0.0, 0.0, False),
            _time("step", config.step_bins, config.step_max),
            _time("duration", config.duration_bins, config.duration_max),
            AttributeBins("velocity", config.velocity_bins, (high - low) / config.velocity_bins, low, 1.0, False))
    assert tuple(b.name for b in bins) == ATTRIBUTES
    return bins


def index(config: ModelConfig, notes: np.ndarray) -> np.ndarray:
    """Notes [..., 4] -> the bin of every attribute [..., 4] (int64), by float32 thresholds
    (AttributeBins.index): training targets, scores, and what the graph does with `given`."""
    return np.stack([b.index(notes[..., i]) for i, b in enumerate(of(config))], axis=-1)


def thresholds(config: ModelConfig) -> np.ndarray:
    """Every attribute's thresholds as float32 [4, VOCAB - 1], padded with +inf (the v3 graph's)."""
    out = np.full((len(ATTRIBUTES), VOCAB - 1), np.inf, np.float32)
    for a, b in enumerate(of(config)):
        out[a, :b.count - 1] = b.thresholds()
    return out


def counts(config: ModelConfig) -> tuple[int, ...]:
    return tuple(b.count for b in of(config))


def constants(config: ModelConfig) -> dict[str, list[float]]:
    """The decode constants the graph carries, one per attribute."""
    bins = of(config)
    return {"within": [b.within for b in bins], "scale": [b.scale for b in bins],
            "shift": [b.shift for b in bins], "time": [float(b.time) for b in bins],
            "last": [float(b.count - 1) for b in bins]}


def describe(config: ModelConfig) -> dict[str, list[float]]:
    """Bin edges of the timing and velocity attributes, for the spec's readers."""
    return {b.name: b.edges() for b in of(config) if b.name != "pitch"}
