"""Timing calibration: how real performances spread around the model's step and duration.

For every note of held-out files (each file from a zero state, state carried: the way
stateful generation runs), the ratio target / prediction is taken for step and duration. The
spread depends on the prediction: where the model predicts a short step it is unsure between a
chord (step ~0) and a run of notes, where it predicts a long one the ratio clusters nearer 1.
So predictions are cut into BINS bins (at quantiles of the prediction), and each bin keeps the
quantiles of its ratios. The tables go into the spec (`timing`); the runtime's sampler draws
timing from the table of the predicted value's bin (runtime/sampling.py says why a point
regression alone drifts). Each table's top is capped at the 99th percentile: one ratio from a
20-second pause after a predicted 0.1 s would otherwise put such pauses into ordinary sampling.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpx.runtime.backends import Backend

from . import checkpoint
from .eager import EagerBackend
from .evaluate import stateful_outputs

LEVELS = 33          # quantiles at 0, 1/32, ..., 1
CAP = 0.99           # the highest level's value is the 99th percentile
BINS = 8             # prediction bins, each with its own table
FLOOR = 1e-3         # predictions below this count as this (seconds)


def timing_quantiles(backend: Backend, notes: Sequence[np.ndarray]) -> dict[str, dict[str, list]]:
    """{"step": {"edges": [BINS - 1], "ratios": [BINS][LEVELS]}, "duration": {...}}"""
    preds: dict[str, list[np.ndarray]] = {"step": [], "duration": []}
    targets: dict[str, list[np.ndarray]] = {"step": [], "duration": []}
    for seq, out in stateful_outputs(backend, notes):
        for name, pred, column in (("step", out.step[0], 1), ("duration", out.duration[0], 2)):
            preds[name].append(np.maximum(pred, FLOOR))
            targets[name].append(seq[1:, column])
    levels = np.linspace(0.0, CAP, LEVELS)
    tables = {}
    for name in preds:
        pred, target = np.concatenate(preds[name]), np.concatenate(targets[name])
        edges = np.quantile(pred, np.linspace(0, 1, BINS + 1)[1:-1])
        bins = np.searchsorted(edges, pred)
        ratio = target / pred
        # a bin can be empty when predictions pile up on one value: it takes the pooled table
        tables[name] = {"edges": [round(float(e), 5) for e in edges],
                        "ratios": [[round(float(q), 5) for q in np.quantile(
                            ratio[bins == b] if (bins == b).any() else ratio, levels)] for b in range(BINS)]}
    return tables


def calibrate_checkpoint(path: str | Path, notes: Sequence[np.ndarray]) -> dict[str, dict[str, list]]:
    """Measure the timing quantiles of a checkpoint on `notes` and store them in its spec."""
    loaded = checkpoint.load(path)
    backend = EagerBackend(checkpoint.build_model(loaded, str(path)), loaded.spec)
    timing = timing_quantiles(backend, notes)
    checkpoint.save(path, loaded.spec.replace(timing=timing), loaded.state_dict, loaded.extra,
                    loaded.progress or None)
    return timing
