"""The training loss: a cross-entropy per note attribute, on each attribute's own bins.

Every attribute of the next note is a categorical distribution (runtime/bins.py), so one loss
serves all four: cross-entropy of the logits of its bins (the padded rows of the [4, 128]
logits are left out) against the bin of the real next note, at every unmasked position. The
seed notebook put a sigmoid in front of CrossEntropyLoss; here the loss sees raw logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mpx.runtime.contract import ATTRIBUTES

from .options import LossWeights


def note_loss(logits: Tensor, targets: Tensor, mask: Tensor, counts: tuple[int, ...],
              weights: LossWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of per-attribute cross-entropies over unmasked positions.

    logits [B, T, 4, 128], targets [B, T, 4] (bin indices), mask [B, T]; returns the total and
    each attribute's mean cross-entropy in nats.
    """
    count = mask.sum().clamp_min(1.0)
    flat_mask = mask.flatten()
    parts = {}
    for a, (name, n) in enumerate(zip(ATTRIBUTES, counts)):
        ce = F.cross_entropy(logits[..., a, :n].flatten(0, 1), targets[..., a].flatten(), reduction="none")
        parts[name] = (ce * flat_mask).sum() / count
    total = sum(getattr(weights, name) * part for name, part in parts.items())
    return total, parts  # type: ignore[return-value]
