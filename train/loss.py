"""The training loss: pitch cross-entropy on logits plus MSE with positive pressure (or, for
models with timing="log", squared error in log-seconds).

The seed notebook put a sigmoid in front of CrossEntropyLoss, squashing the logits into (0, 1)
so the softmax inside the loss can barely tell pitches apart; here the loss sees raw logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import TIME_OFFSET
from .options import LossWeights


def positive_pressure_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Elementwise (target - pred)^2 + 10 * max(-pred, 0): pushes predictions to be >= 0."""
    return (target - pred) ** 2 + 10.0 * F.relu(-pred)


def log_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Elementwise squared error of log(t + 0.01): for models with timing="log", whose
    predictions are > -0.01 by construction. In log-seconds a chord's 5 ms and a run's 60 ms
    are far apart, where squared seconds barely tell them from each other."""
    return (torch.log(pred + TIME_OFFSET) - torch.log(target.clamp_min(0.0) + TIME_OFFSET)) ** 2


def note_loss(pitch_logits: Tensor, step: Tensor, duration: Tensor, target: Tensor,
              mask: Tensor, weights: LossWeights, timing: str = "linear") -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted loss over every unmasked position. target [B, T, 3] holds the next notes."""
    count = mask.sum().clamp_min(1.0)
    ce = F.cross_entropy(pitch_logits.flatten(0, 1), target[..., 0].long().flatten(), reduction="none")
    time_loss = log_mse if timing == "log" else positive_pressure_mse
    parts = {
        "pitch": (ce * mask.flatten()).sum() / count,
        "step": (time_loss(step, target[..., 1]) * mask).sum() / count,
        "duration": (time_loss(duration, target[..., 2]) * mask).sum() / count,
    }
    total = weights.pitch * parts["pitch"] + weights.step * parts["step"] + weights.duration * parts["duration"]
    return total, parts
