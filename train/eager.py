"""The eager backend: a checkpoint run by the model code in PyTorch, behind the runtime's
backend interface. It is the reference every exported artifact is compared with."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mpx.runtime.backends import Outputs, torch_step
from mpx.runtime.generate import Generator
from mpx.runtime.spec import ModelSpec

from . import checkpoint
from .model import NoteLSTM


class EagerBackend:
    name = "eager"

    def __init__(self, model: NoteLSTM, spec: ModelSpec, path: Path | None = None) -> None:
        self.model = model.eval()
        self.spec = spec
        self.path = path or Path("<memory>")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> "EagerBackend":
        model, spec = checkpoint.load_model(path)
        return cls(model, spec, Path(path))

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs:
        return torch_step(torch, self.model, notes, h, c)


def load(path: str | os.PathLike[str]) -> Generator:
    """A Generator running a checkpoint eagerly."""
    return Generator(EagerBackend.from_checkpoint(path))
