"""The sampling rule of contract v3, stated once in numpy: what every graph computes inside
itself, for each attribute of the note it draws, from that attribute's logits, the uniforms and
the row's sampling parameters. It is the reference the graphs are tested against and that parity
uses to tell a near-tie (where float rounding alone may pick the neighbouring bin) from a real
disagreement.

The attributes of a note are drawn one after the other in the model's chain order (spec
`config.order`); each attribute's logits are conditioned on the bins drawn (or given) before it,
so they are the `logits` output's last row only once those are known. Per row and attribute a,
with n bins, logits z (its first n entries), temperature t, top-p p, and the uniforms
u = uniforms[a], v = uniforms[4 + a] (docs/contract.md, "Sampling inside the graph"):

    s = z / max(t, 1e-6); P = softmax(s)
    if t == 0 (greedy): u := 0, v := 0.5
    p < 1 (a nucleus): among the K = min(16, n) likeliest bins, in descending order of P
        (pi_1 >= pi_2 >= ...), tau = the smallest pi_k whose mass before it,
        pi_1 + ... + pi_(k-1), is under p (pi_K when all are);  p = 1: tau = 0
    Q = cumsum(softmax(s where P >= tau, else -1e30))       # the kept bins, in their own order
    bin = min(#{j : Q_j <= u}, n - 1); value = decode(bin, v)  (runtime/bins.py)

A nucleus is thus the smallest set of likeliest bins holding at least p of the mass, looked for
among the 16 likeliest (a partial sort; a larger one is cut to 16), and every bin as likely as
its least likely member is kept. There is no sort of all n bins and no cumulative sum over a
padded [4, 128]: v2's full sort and cumsum cost more than its LSTM at 64 rows.
"""
from __future__ import annotations

import numpy as np

from . import bins
from .config import ModelConfig
from .contract import ATTRIBUTES

A = len(ATTRIBUTES)
TEMPERATURE_FLOOR = 1e-6  # the divisor for greedy rows: any positive number keeps the argmax first
NUCLEUS_CAP = 16          # a nucleus is looked for among this many likeliest bins
BIG = np.float32(1e30)


def per_row(values: np.ndarray, rows: int) -> np.ndarray:
    """Sampling parameters as [4] (shared) or [rows, 4] -> [rows, 4] float32."""
    return np.broadcast_to(np.asarray(values, np.float32).reshape(-1, A), (rows, A))


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kept_logits(z: np.ndarray, temperature: np.ndarray, top_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, the logits of the kept bins, the others -BIG) for logits z [B, n] and per-row t, p [B]."""
    z = np.asarray(z, np.float32)
    s = z * (np.float32(1) / np.maximum(np.asarray(temperature, np.float32), np.float32(TEMPERATURE_FLOOR)))[:, None]
    p = softmax(s)
    top = -np.sort(-p, axis=-1)[:, :NUCLEUS_CAP]
    before = np.cumsum(top, axis=-1) - top
    top_p = np.asarray(top_p, np.float32)[:, None]
    tau = np.where(before < top_p, top, np.float32(2)).min(axis=-1, keepdims=True)
    tau = np.where(top_p < 1, tau, np.float32(0))
    return s, np.where(p >= tau, s, -BIG)


def cumulative(z: np.ndarray, temperature: np.ndarray, top_p: np.ndarray) -> np.ndarray:
    """Q [B, n]: the cumulative distribution the draw inverts (float32, as the graphs)."""
    return np.cumsum(softmax(kept_logits(z, temperature, top_p)[1]), axis=-1)


def draw(z: np.ndarray, temperature: np.ndarray, top_p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Bins [B] of one attribute from its logits z [B, n] (its own bins) and per-row t, p, u [B]."""
    u = np.where(np.asarray(temperature) > 0, np.asarray(u, np.float32), np.float32(0))
    q = cumulative(z, temperature, top_p)
    return np.minimum((q <= u[:, None]).sum(axis=-1), z.shape[-1] - 1)


def sample(logits: np.ndarray, uniforms: np.ndarray, temperature: np.ndarray, top_p: np.ndarray,
           config: ModelConfig) -> np.ndarray:
    """The next notes [B, 4] (float64) the rule draws from the last row of `logits` [B, 4, 128]
    when those are the logits the graph drew from (each attribute conditioned on the bins drawn
    before it: true of a graph's own output)."""
    rows = len(logits)
    t, p = per_row(temperature, rows), per_row(top_p, rows)
    out = np.zeros((rows, A))
    for a, attribute in enumerate(bins.of(config)):
        k = draw(logits[:, a, :attribute.count], t[:, a], p[:, a], uniforms[:, a])
        place = np.where(t[:, a] == 0, 0.5, uniforms[:, A + a])
        out[:, a] = attribute.value(k, place)
    return out


def margin(logits: np.ndarray, uniforms: np.ndarray, temperature: np.ndarray, top_p: np.ndarray,
           counts: tuple[int, ...]) -> np.ndarray:
    """For each row and attribute of logits [B, 4, 128]: how close the draw comes to a decision
    float rounding could flip, computed in float64: the distance from u to the nearest boundary
    of Q, or from top_p to the nearest running mass of the nucleus search; for a greedy draw,
    the likeliest bin's lead in logits."""
    rows = len(logits)
    t, p = per_row(temperature, rows), per_row(top_p, rows)
    out = np.full((rows, A), np.inf)
    for a, n in enumerate(counts):
        z = logits[:, a, :n].astype(np.float64) / np.maximum(t[:, a].astype(np.float64), TEMPERATURE_FLOOR)[:, None]
        prob = softmax(z)
        top = -np.sort(-prob, axis=-1)[:, :NUCLEUS_CAP]
        before = np.cumsum(top, axis=-1) - top
        nucleus = np.where(p[:, a] < 1, np.abs(before - p[:, a, None]).min(axis=-1), np.inf)
        tau = np.where(before < p[:, a, None], top, 2.0).min(axis=-1, keepdims=True)
        kept = np.where((p[:, a, None] >= 1) | (prob >= tau), prob, 0.0)
        q = np.cumsum(kept / kept.sum(axis=-1, keepdims=True), axis=-1)
        u = np.where(t[:, a] > 0, uniforms[:, a].astype(np.float64), 0.0)
        boundary = np.abs(q[:, :-1] - u[:, None]).min(axis=-1) if n > 1 else np.full(rows, np.inf)
        raw = np.sort(logits[:, a, :n].astype(np.float64), axis=-1)
        greedy_tie = raw[:, -1] - raw[:, -2] if n > 1 else np.full(rows, np.inf)  # the argmax's lead
        out[:, a] = np.minimum(np.where(t[:, a] > 0, boundary, greedy_tie), nucleus)
    return out
