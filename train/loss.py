"""The training loss: a cross-entropy per note attribute, on each attribute's own bins.

Every attribute of the next note is a categorical distribution (runtime/bins.py), so one loss
serves all four: cross-entropy of the logits of its bins (the padded rows of the [4, 128]
logits are left out) against the bin of the real next note, at every unmasked position. The
seed notebook put a sigmoid in front of CrossEntropyLoss; here the loss sees raw logits.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mpx.runtime.contract import ATTRIBUTES

from .options import LossWeights


def note_loss(logits: Sequence[Tensor], targets: Tensor, mask: Tensor,
              weights: LossWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of per-attribute cross-entropies over unmasked positions.

    logits: each attribute's [B, T, n] over its own n bins (`NoteLSTM.training_scores`, or
    `own_bins` of the contract's [B, T, 4, 128]); targets [B, T, 4] (bin indices), mask [B, T].
    Returns the total and each attribute's mean cross-entropy in nats.
    """
    count = mask.sum().clamp_min(1.0)
    flat_mask = mask.flatten()
    parts = {}
    for a, (name, scores) in enumerate(zip(ATTRIBUTES, logits)):
        ce = F.cross_entropy(scores.flatten(0, 1).float(), targets[..., a].flatten(), reduction="none")
        parts[name] = (ce * flat_mask).sum() / count
    total = sum(getattr(weights, name) * part for name, part in parts.items())
    return total, parts  # type: ignore[return-value]


def own_bins(logits: Tensor, counts: Sequence[int]) -> list[Tensor]:
    """The contract's padded logits [B, T, 4, 128] -> each attribute's [B, T, n] (its n bins)."""
    return [logits[..., a, :n] for a, n in enumerate(counts)]
