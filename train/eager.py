"""The eager backend: a checkpoint run by the model code in PyTorch, behind the runtime's
backend interface. It is the reference every exported artifact is compared with. The runtime
finds it through the `mpx.backends` entry point (pyproject.toml) when a checkpoint is opened."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mpx.runtime.backends import torch_step, use_torch_kernels
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec

from . import checkpoint
from .model import NoteLSTM


class EagerBackend:
    name = "eager"

    def __init__(self, model: NoteLSTM, spec: ModelSpec, path: Path | None = None) -> None:
        use_torch_kernels(torch, None)
        self.model = model.eval()
        self.spec = spec
        self.path = path or Path("<memory>")

    def step(self, notes: np.ndarray, h: np.ndarray, c: np.ndarray) -> Outputs:
        return torch_step(torch, self.model, notes, h, c)


def open_checkpoint(path: str | os.PathLike[str], threads: int | None = None) -> EagerBackend:
    """The `eager` backend plugin: a checkpoint file -> a backend running it."""
    use_torch_kernels(torch, threads)
    model, spec = checkpoint.load_model(path)
    return EagerBackend(model, spec, Path(path))
