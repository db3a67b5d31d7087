"""Mixed precision for training: autocast where it helps, a gradient scaler where it is needed.

--precision auto: bf16 autocast on a CUDA GPU that supports it (no scaler needed: bf16 has
float32's range), else fp16 autocast with a gradient scaler; float32 on a CPU (bf16 autocast
of an LSTM on a CPU is slower than float32 on most CPUs). The loss, the optimizer and the
weights stay float32; validation and every export run in float32.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from mpx.runtime.errors import OptionsError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(precision: str, device: torch.device) -> str:
    """The precision --precision means on this device; OptionsError when it cannot run there."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise OptionsError("--precision fp16 needs a CUDA device (a gradient scaler on float16); "
                           "on a CPU use fp32 or bf16")
    return precision


def _scaler(device: torch.device) -> Any:
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler(device.type)
    return torch.cuda.amp.GradScaler()


class Precision:
    def __init__(self, precision: str, device: torch.device) -> None:
        self.name = resolve(precision, device)
        self.device = device
        self.scaler = _scaler(device) if self.name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.name == "fp32":
            yield
            return
        with torch.autocast(self.device.type, dtype=DTYPES[self.name]):
            yield

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer, parameters: Any, clip: float) -> None:
        """Backward, clip the gradient norm, step (through the scaler for fp16)."""
        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(parameters, clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state(self) -> dict[str, Any]:
        """JSON-able state for `last` (the scaler's current scale), so --resume continues it."""
        return {"name": self.name, "scaler": self.scaler.state_dict() if self.scaler else None}

    def load(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
