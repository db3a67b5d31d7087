"""The eager backend: a checkpoint run by the model code in PyTorch, behind the runtime's
backend interface. It is the reference every exported artifact is compared with. The runtime
finds it through the `mpx.backends` entry point (pyproject.toml) when a checkpoint is opened."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mpx.runtime.backends import Checked, use_torch_kernels
from mpx.runtime.contract import Outputs
from mpx.runtime.spec import ModelSpec

from . import checkpoint
from .model import NoteLSTM


class EagerBackend(Checked):
    name = "eager"

    def __init__(self, model: NoteLSTM, spec: ModelSpec, path: Path | None = None) -> None:
        self.model = model.eval()
        self.spec = spec
        self.path = path or Path("<memory>")

    def call(self, notes: np.ndarray, h0: np.ndarray, c0: np.ndarray, uniforms: np.ndarray,
             temperature: np.ndarray, top_p: np.ndarray, controls: np.ndarray, given: np.ndarray) -> Outputs:
        device = self.model.head_in.weight.device  # the training loop validates on its own device
        with torch.inference_mode():
            out = self.model(*(torch.from_numpy(np.ascontiguousarray(x)).to(device)
                               for x in (notes, h0, c0, uniforms, temperature, top_p, controls, given)))
        return Outputs(*(t.cpu().numpy() for t in out))


def open_checkpoint(path: str | os.PathLike[str], threads: int | None = None) -> EagerBackend:
    """The `eager` backend plugin: a checkpoint file -> a backend running it."""
    use_torch_kernels(torch, threads)
    model, spec = checkpoint.load_model(path)
    return EagerBackend(model, spec, Path(path))
