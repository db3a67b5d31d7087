"""The training loss: pitch cross-entropy on logits plus MSE with positive pressure.

The seed notebook put a sigmoid in front of CrossEntropyLoss, squashing the logits into (0, 1)
so the softmax inside the loss can barely tell pitches apart; here the loss sees raw logits.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class LossWeights:
    pitch: float = 0.05
    step: float = 1.0
    duration: float = 1.0


def positive_pressure_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Elementwise (target - pred)^2 + 10 * max(-pred, 0): pushes predictions to be >= 0."""
    return (target - pred) ** 2 + 10.0 * F.relu(-pred)


def note_loss(pitch_logits: Tensor, step: Tensor, duration: Tensor, target: Tensor,
              mask: Tensor, weights: LossWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted loss over every unmasked position. target [B, T, 3] holds the next notes."""
    count = mask.sum().clamp_min(1.0)
    ce = F.cross_entropy(pitch_logits.flatten(0, 1), target[..., 0].long().flatten(), reduction="none")
    parts = {
        "pitch": (ce * mask.flatten()).sum() / count,
        "step": (positive_pressure_mse(step, target[..., 1]) * mask).sum() / count,
        "duration": (positive_pressure_mse(duration, target[..., 2]) * mask).sum() / count,
    }
    total = weights.pitch * parts["pitch"] + weights.step * parts["step"] + weights.duration * parts["duration"]
    return total, parts
