"""The v3 sampling rule in numpy (it moves to runtime/sampling.py once that module exists): what
the graph does for one attribute of one row, so parity checks can decide a near-tie and
consumers can read the rule. float32 as the graph computes it.

One attribute with n bins, its logits z [128] (padded: entries past n are LOGIT_PAD), the
row's temperature t, top_p and the uniform u of this attribute:
    s = z * (1 / max(t, 1e-6))                      # t = 0: greedy (u := 0 below)
    p = softmax(s)
    top_p < 1: nucleus; the rule of `truncate`      # top_p = 1: every bin
    Q = cumsum(softmax(s where kept, else -1e30))   # the kept bins, in their own order
    bin = min(#{j : Q_j <= u}, n - 1)
No sort of the n bins for the draw: the inverse of the cumulative distribution in bin order.
"""
from __future__ import annotations

import numpy as np

TEMPERATURE_FLOOR = np.float32(1e-6)
NUCLEUS_CAP = 16
BIG = np.float32(1e30)


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def truncate(s: np.ndarray, p: np.ndarray, top_p: np.ndarray, variant: str) -> np.ndarray:
    """The logits of the kept bins (the others -BIG). variant "top_p": the smallest set of
    likeliest bins whose mass reaches top_p, looked for among the NUCLEUS_CAP likeliest (ties at
    the threshold all kept); "min_p": the bins at least (1 - top_p) times as likely as the
    likeliest; "none": every bin."""
    if variant == "none":
        return s
    if variant == "min_p":
        keep = s >= s.max(axis=-1, keepdims=True) + np.log1p(-np.minimum(top_p, 1.0))[..., None]
        return np.where(keep, s, -BIG)
    top = -np.sort(-p, axis=-1)[..., :NUCLEUS_CAP]
    before = np.cumsum(top, axis=-1) - top
    tau = np.where(before < top_p[..., None], top, 2.0).min(axis=-1, keepdims=True)
    tau = np.where(top_p[..., None] < 1, tau, 0.0)
    return np.where(p >= tau, s, -BIG)


def draw(z: np.ndarray, n: int, temperature: np.ndarray, top_p: np.ndarray, u: np.ndarray,
         variant: str = "top_p") -> np.ndarray:
    """Bins [B] of one attribute: logits z [B, 128] float32, its n real bins, per-row temperature,
    top_p and uniform [B]."""
    z = np.asarray(z, np.float32)
    inv_t = (np.float32(1) / np.maximum(np.asarray(temperature, np.float32), TEMPERATURE_FLOOR))[:, None]
    u = np.where(np.asarray(temperature) > 0, np.asarray(u, np.float32), np.float32(0))
    s = z * inv_t
    p = softmax(s)
    q = np.cumsum(softmax(truncate(s, p, np.asarray(top_p, np.float32), variant)), axis=-1)
    return np.minimum((q <= u[:, None]).sum(axis=-1), n - 1)
