"""The sampling rule of contract v2, stated once in numpy (float64): what every graph computes
inside itself from the last position's logits, the uniforms and the sampling parameters. It is
the reference the graphs are tested against and that parity uses to tell a near-tie (where
float rounding alone may pick the neighbouring bin) from a real disagreement.

Per row and attribute a, with temperature t and top-p p (docs/contract.md, "Sampling inside the graph"):

    s = logits[a, :bins_a] / max(t, 1e-6); sort descending (order o); C = cumsum(softmax(s))
    if t == 0 (greedy): u := 0, v := 0.5          # the likeliest bin, its centre
    k = min(#{j : C_j <= u * p}, bins_a - 1)      # the quantile u * p of the sorted distribution
    bin = o_k; value = decode(bin, v)

with u = uniforms[a] and v = uniforms[4 + a]. temperature and top_p are [4] (shared by every
row, contract v2) or [B, 4] (one setting per row).
"""
from __future__ import annotations

import numpy as np

from . import bins
from .config import ModelConfig
from .contract import ATTRIBUTES

A = len(ATTRIBUTES)
GREEDY_EPSILON = 1e-6


def _per_row(values: np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, np.float64).reshape(-1, A), (rows, A))


def sorted_cdf(logits: np.ndarray, temperature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For logits [B, n] of one attribute and temperatures [B]: the bins in descending order of
    probability (stable) and the cumulative distribution along that order, both [B, n]."""
    z = logits.astype(np.float64) / np.maximum(temperature, GREEDY_EPSILON)[:, None]
    order = np.argsort(-z, axis=-1, kind="stable")
    z = np.take_along_axis(z, order, axis=-1)
    p = np.exp(z - z[:, :1])
    return order, np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)


def sample(logits: np.ndarray, uniforms: np.ndarray, temperature: np.ndarray, top_p: np.ndarray,
           config: ModelConfig) -> np.ndarray:
    """The next notes [B, 4] (float64) the rule draws from logits [B, 4, 128] of the last position."""
    rows = len(logits)
    t, p = _per_row(temperature, rows), _per_row(top_p, rows)
    out = np.zeros((rows, A))
    for a, attribute in enumerate(bins.of(config)):
        order, cdf = sorted_cdf(logits[:, a, :attribute.count], t[:, a])
        greedy = t[:, a] == 0
        draw = np.where(greedy, 0.0, uniforms[:, a])
        place = np.where(greedy, 0.5, uniforms[:, A + a])
        k = np.minimum((cdf <= (draw * p[:, a])[:, None]).sum(axis=-1), attribute.count - 1)
        out[:, a] = attribute.value(order[np.arange(rows), k], place)
    return out


def margin(logits: np.ndarray, uniforms: np.ndarray, temperature: np.ndarray, top_p: np.ndarray,
           counts: tuple[int, ...]) -> np.ndarray:
    """For each row and attribute of logits [B, 4, 128]: how far the draw u * top_p lies from
    the nearest boundary of the cumulative distribution (inf for greedy draws, which take the
    first bin whatever the rounding)."""
    rows = len(logits)
    t, p = _per_row(temperature, rows), _per_row(top_p, rows)
    out = np.full((rows, A), np.inf)
    for a, n in enumerate(counts):
        drawn = t[:, a] > 0
        if not drawn.any():
            continue
        _, cdf = sorted_cdf(logits[drawn, a, :n], t[drawn, a])
        target = uniforms[drawn, a].astype(np.float64) * p[drawn, a]
        out[drawn, a] = np.abs(cdf - target[:, None]).min(axis=-1)
    return out
